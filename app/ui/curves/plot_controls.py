"""The bar above a curve panel: x axis mode, log y, smoothing, legend, zoom, export."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSlider,
    QToolButton,
    QWidget,
)

from app.ui.common.plain_text import PlainLabel
from app.ui.curves.curve_data import XMode

X_MODES = ((XMode.STEP, "Step"), (XMode.WALL, "Wall time"), (XMode.RELATIVE, "Relative time"))
DEFAULT_SMOOTHING = 0.6


class PlotControls(QWidget):
    changed = Signal(str)  # "x_mode", "log_y", "smoothing" or "legend"
    reset_zoom = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.x_combo = QComboBox()
        for mode, label in X_MODES:
            self.x_combo.addItem(label, mode.value)
        self.x_combo.setToolTip("What the horizontal axis shows")
        self.log_check = QCheckBox("Log y")
        self.smooth_slider = QSlider(Qt.Orientation.Horizontal)
        self.smooth_slider.setRange(0, 99)
        self.smooth_slider.setValue(round(DEFAULT_SMOOTHING * 100))
        self.smooth_slider.setFixedWidth(140)
        self.smooth_slider.setToolTip(
            "Exponential moving average, debiased like TensorBoard's; the raw curve "
            "stays faint behind the smoothed one")
        self.smooth_value = PlainLabel()
        self.smooth_value.setMinimumWidth(30)
        self.legend_check = QCheckBox("Legend")
        self.zoom_button = QPushButton("Reset zoom")
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.export_menu = QMenu(self.export_button)
        self.export_button.setMenu(self.export_menu)
        self.readout = PlainLabel()
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout.setStyleSheet("color: palette(dark);")

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(PlainLabel("X axis"))
        row.addWidget(self.x_combo)
        row.addSpacing(8)
        row.addWidget(self.log_check)
        row.addSpacing(8)
        row.addWidget(PlainLabel("Smoothing"))
        row.addWidget(self.smooth_slider)
        row.addWidget(self.smooth_value)
        row.addWidget(self.legend_check)
        row.addWidget(self.readout, 1)
        row.addWidget(self.zoom_button)
        row.addWidget(self.export_button)

        self._show_smoothing()
        self.x_combo.currentIndexChanged.connect(lambda _i: self.changed.emit("x_mode"))
        self.log_check.toggled.connect(lambda _on: self.changed.emit("log_y"))
        self.smooth_slider.valueChanged.connect(self._on_smoothing)
        self.legend_check.toggled.connect(lambda _on: self.changed.emit("legend"))
        self.zoom_button.clicked.connect(self.reset_zoom)

    @property
    def x_mode(self) -> XMode:
        return XMode(self.x_combo.currentData())

    def set_x_mode(self, mode: XMode) -> None:
        self.x_combo.setCurrentIndex(self.x_combo.findData(XMode(mode).value))

    @property
    def log_y(self) -> bool:
        return self.log_check.isChecked()

    @property
    def smoothing(self) -> float:
        return self.smooth_slider.value() / 100.0

    def set_smoothing(self, beta: float) -> None:
        self.smooth_slider.setValue(round(min(max(beta, 0.0), 0.99) * 100))

    @property
    def legend(self) -> bool:
        return self.legend_check.isChecked()

    def set_readout(self, text: str) -> None:
        self.readout.setText(text)
        self.readout.setToolTip(text)

    def _on_smoothing(self, _value: int) -> None:
        self._show_smoothing()
        self.changed.emit("smoothing")

    def _show_smoothing(self) -> None:
        self.smooth_value.setText(f"{self.smoothing:.2f}")
