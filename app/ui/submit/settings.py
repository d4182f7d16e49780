"""The submit dialog's shared settings: where and how every run of the dialog runs.

Host, GPUs (or pinned GPU indices), free memory, priority, time limit, tags, retry, and the
environment (conda env, venv, setup lines, variables). The form remembers which settings
the user changed: only those are applied to runs from files that set their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from app.core.jobs.argparams import format_value
from app.core.jobs.jobspec import MAX_GPUS, MAX_PRIORITY, JobSpec
from app.ui.submit.sweep_editor import EnvTable

ANY_HOST = "Any free host"


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole != seconds or whole % 60:
        return format_value(seconds)
    hours, minutes = divmod(whole // 60, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")


def _memory_text(mib: float | None) -> str:
    if mib is None:
        return ""
    if mib >= 1024 and (mib / 1024).is_integer():
        return f"{int(mib / 1024)}GiB"
    return format_value(int(mib) if float(mib).is_integer() else mib)


class SharedSettings(QObject):
    """Placement and environment fields (laid out by the dialog: ``placement_rows``);
    ``changed`` after any edit by the user."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.touched: set[str] = set()
        self._filling = False
        self.host_combo = QComboBox()
        self.host_combo.addItem(ANY_HOST, "")
        self.host_combo.setToolTip("Where the runs may start; the scheduler picks free GPUs")
        self.gpus_spin = QSpinBox()
        self.gpus_spin.setRange(0, MAX_GPUS)
        self.gpus_spin.setToolTip("GPUs per run, all on one host")
        self.pin_edit = QLineEdit()
        self.pin_edit.setPlaceholderText("any free GPU")
        self.pin_edit.setToolTip("Only these GPU indices of the chosen host, e.g. 0 or 0, 1")
        self.memory_edit = QLineEdit()
        self.memory_edit.setPlaceholderText("e.g. 20GiB (empty: any free GPU)")
        self.priority_spin = QSpinBox()
        self.priority_spin.setRange(-MAX_PRIORITY, MAX_PRIORITY)
        self.priority_spin.setToolTip("Higher starts first")
        self.time_edit = QLineEdit()
        self.time_edit.setPlaceholderText("e.g. 2h30m (empty: no limit)")
        self.tags_edit = QLineEdit()
        self.tags_edit.setPlaceholderText("comma-separated")
        self.retry_check = QCheckBox("Retry if the host is lost")
        self.retry_check.setToolTip("Queue the run again when its host reboots or is "
                                    "lost while it runs")

        self.conda_edit = QLineEdit()
        self.conda_edit.setPlaceholderText("conda environment name")
        self.venv_edit = QLineEdit()
        self.venv_edit.setPlaceholderText("e.g. ~/venvs/torch (on the host)")
        self.setup_edit = QPlainTextEdit()
        self.setup_edit.setPlaceholderText("shell lines run before the command, e.g.\n"
                                           "module load cuda/12.4")
        self.setup_edit.setTabChangesFocus(True)
        self.env_table = EnvTable()

        self.placement_rows: list[tuple[str, QWidget]] = [
            ("Host", self.host_combo), ("GPUs per run", self.gpus_spin),
            ("Pin to GPUs", self.pin_edit), ("Min free memory", self.memory_edit),
            ("Priority", self.priority_spin), ("Time limit", self.time_edit),
            ("Tags", self.tags_edit), ("", self.retry_check),
        ]
        self.environment_rows: list[tuple[str, QWidget]] = [
            ("Conda env", self.conda_edit), ("Virtualenv", self.venv_edit),
            ("Setup lines", self.setup_edit), ("Variables", self.env_table),
        ]

        self._watch("host", self.host_combo.currentIndexChanged)
        self._watch("gpus", self.gpus_spin.valueChanged)
        self._watch("pin", self.pin_edit.textChanged)
        self._watch("memory", self.memory_edit.textChanged)
        self._watch("priority", self.priority_spin.valueChanged)
        self._watch("time_limit", self.time_edit.textChanged)
        self._watch("tags", self.tags_edit.textChanged)
        self._watch("retry", self.retry_check.toggled)
        self._watch("conda_env", self.conda_edit.textChanged)
        self._watch("venv", self.venv_edit.textChanged)
        self._watch("setup", self.setup_edit.textChanged)
        self._watch("env", self.env_table.changed)
        self.pin_edit.textChanged.connect(self._follow_pins)

    def _watch(self, key: str, signal: Any) -> None:
        def touched(*_args: Any) -> None:
            if not self._filling:
                self.touched.add(key)
                self.changed.emit()

        signal.connect(touched)

    def _follow_pins(self, text: str) -> None:
        # Pinned GPUs decide the count: keep the spin box showing it, and not editable.
        pins = [p for p in text.replace(",", " ").split() if p.isdigit()]
        self.gpus_spin.setEnabled(not pins)
        if pins:
            self.gpus_spin.setValue(len(pins))

    def set_hosts(self, names: Sequence[str]) -> None:
        with self.filling():
            current = self.host_combo.currentData()
            self.host_combo.clear()
            self.host_combo.addItem(ANY_HOST, "")
            for name in names:
                self.host_combo.addItem(name, name)
            self._select_host(current or "")

    def _select_host(self, name: str) -> None:
        index = self.host_combo.findData(name)
        if index < 0:
            # Not in the store (a cloned run's old host): listed so the problem is visible.
            self.host_combo.addItem(f"{name} (unknown)", name)
            index = self.host_combo.count() - 1
        self.host_combo.setCurrentIndex(index)

    def fill(self, spec: JobSpec) -> None:
        """Show ``spec``'s settings (nothing counts as changed by the user)."""
        with self.filling():
            self._select_host(spec.hosts[0] if len(spec.hosts) == 1 else "")
            self.gpus_spin.setValue(spec.gpus)
            self.pin_edit.setText(", ".join(str(i) for i in spec.pin_gpus))
            self.memory_edit.setText(_memory_text(spec.min_free_mem_mib))
            self.priority_spin.setValue(spec.priority)
            self.time_edit.setText(_duration_text(spec.time_limit_s))
            self.tags_edit.setText(", ".join(spec.tags))
            self.retry_check.setChecked(spec.retry_on_lost)
            self.conda_edit.setText(spec.conda_env or "")
            self.venv_edit.setText(spec.venv or "")
            self.setup_edit.setPlainText("\n".join(spec.setup))
            self.env_table.set_pairs(dict(spec.env))

    def pin(self, host: str, gpus: Sequence[int]) -> None:
        """Pin to ``host`` (and these GPUs): counts as the user's choice."""
        self._select_host(host)
        self.touched.add("host")
        if gpus:
            self.pin_edit.setText(", ".join(str(g) for g in gpus))
            self.touched.update({"pin", "gpus"})
        self.changed.emit()

    def filling(self) -> _Filling:
        return _Filling(self)

    def values(self) -> dict[str, Any]:
        """The raw values of the changed settings (see submit_form.parse_shared)."""
        raw: dict[str, Callable[[], Any]] = {
            "host": lambda: self.host_combo.currentData() or "",
            "gpus": self.gpus_spin.value,
            "pin": self.pin_edit.text,
            "memory": self.memory_edit.text,
            "priority": self.priority_spin.value,
            "time_limit": self.time_edit.text,
            "tags": self.tags_edit.text,
            "retry": self.retry_check.isChecked,
            "conda_env": self.conda_edit.text,
            "venv": self.venv_edit.text,
            "setup": self.setup_edit.toPlainText,
            "env": self.env_table.pairs,
        }
        return {key: raw[key]() for key in raw if key in self.touched}

    def widget_for(self, field: str) -> QWidget | None:
        """The widget that edits spec field ``field`` (to mark a problem on it)."""
        return {
            "hosts": self.host_combo, "gpus": self.gpus_spin, "pin_gpus": self.pin_edit,
            "min_free_mem_mib": self.memory_edit, "priority": self.priority_spin,
            "time_limit": self.time_edit, "tags": self.tags_edit,
            "conda_env": self.conda_edit, "venv": self.venv_edit, "setup": self.setup_edit,
            "env": self.env_table.table,
        }.get(field)


class _Filling:
    def __init__(self, form: SharedSettings) -> None:
        self._form = form

    def __enter__(self) -> None:
        self._form._filling = True

    def __exit__(self, *_exc: object) -> None:
        self._form._filling = False
