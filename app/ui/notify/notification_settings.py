"""The notification settings dialog: which events pop up, quiet while focused, and the
watched conditions (free GPUs on any host, stalled runs)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.notify_events import RUN_EVENTS, NotifySettings
from app.ui.common.plain_text import PlainLabel

_LABELS = {
    "succeeded": "A run finishes",
    "failed": "A run fails",
    "cancelled": "A run is cancelled",
    "lost": "A run is lost (its host rebooted)",
}


class NotificationSettingsDialog(QDialog):
    def __init__(self, settings: NotifySettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Notification settings")
        self.event_boxes: dict[str, QCheckBox] = {}
        events = QGroupBox("Notify me when")
        events_layout = QVBoxLayout(events)
        for kind in RUN_EVENTS:
            box = QCheckBox(_LABELS[kind])
            box.setChecked(kind in settings.events)
            self.event_boxes[kind] = box
            events_layout.addWidget(box)
        self.quiet = QCheckBox("Quiet while Labdeck has the focus (still listed)")
        self.quiet.setChecked(settings.quiet_when_focused)
        events_layout.addWidget(self.quiet)

        watch = QGroupBox("Watched conditions")
        form = QFormLayout(watch)
        self.free_gpus = QSpinBox()
        self.free_gpus.setRange(0, 64)
        self.free_gpus.setSpecialValueText("off")
        self.free_gpus.setSuffix(" GPUs")
        self.free_gpus.setValue(settings.free_gpus)
        form.addRow("Free on any host:", self.free_gpus)
        self.stall_minutes = QDoubleSpinBox()
        self.stall_minutes.setRange(0, 24 * 60)
        self.stall_minutes.setDecimals(0)
        self.stall_minutes.setSpecialValueText("off")
        self.stall_minutes.setSuffix(" min")
        self.stall_minutes.setValue(settings.stall_minutes)
        form.addRow("Run stalled (no output, 0% GPU) for:", self.stall_minutes)
        self.stall_runs = QLineEdit(", ".join(settings.stall_runs))
        self.stall_runs.setPlaceholderText("every running run")
        form.addRow("Watch runs (ids):", self.stall_runs)
        hint = PlainLabel("Watched conditions notify once each time they start to hold.")
        hint.setWordWrap(True)
        form.addRow(hint)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(events)
        layout.addWidget(watch)
        layout.addWidget(buttons)

    def settings(self) -> NotifySettings:
        runs = tuple(r.strip() for r in self.stall_runs.text().replace(",", " ").split()
                     if r.strip())
        return NotifySettings(
            events=frozenset(k for k, box in self.event_boxes.items() if box.isChecked()),
            quiet_when_focused=self.quiet.isChecked(),
            free_gpus=self.free_gpus.value(),
            stall_minutes=float(self.stall_minutes.value()),
            stall_runs=runs,
        )
