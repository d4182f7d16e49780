"""How the compare window is laid out: runs and metrics on the left of the plots, and under
both the parameters and the last/min/max summary side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui.common.plain_text import PlainLabel
from app.ui.compare.legend import MetricChooser, RunLegend
from app.ui.compare.panel import ComparePanel
from app.ui.compare.params import ParamTable
from app.ui.compare.stats import StatsTable

SIDE_PX = 240
HEADING = "font-weight: bold;"


class CompareParts(Protocol):
    curves: ComparePanel
    legend: RunLegend
    metrics: MetricChooser
    params: ParamTable
    stats: StatsTable


@dataclass(slots=True)
class CompareUi:
    title: QLabel
    status: QLabel
    params_summary: QLabel
    show_all: QCheckBox
    export_button: QPushButton
    main_split: QSplitter
    top_split: QSplitter
    tables_split: QSplitter


def _heading(text: str) -> QLabel:
    label = PlainLabel(text)
    label.setStyleSheet(HEADING)
    return label


def _column(*rows: QWidget | QHBoxLayout, stretch_last: bool = True) -> QWidget:
    box = QWidget()
    col = QVBoxLayout(box)
    col.setContentsMargins(0, 0, 0, 0)
    col.setSpacing(4)
    for i, row in enumerate(rows):
        last = stretch_last and i == len(rows) - 1
        if isinstance(row, QHBoxLayout):
            col.addLayout(row)
        else:
            col.addWidget(row, 1 if last else 0)
    return box


def build_layout(window: QWidget) -> CompareUi:
    """Lay out ``window``'s parts (it must have the attributes of ``CompareParts``)."""
    parts: CompareParts = window  # type: ignore[assignment]
    title = PlainLabel("Comparing runs")
    title.setStyleSheet("font-size: 14pt; font-weight: bold;")
    hint = PlainLabel("Drop runs here to add them · click a run to hide or show it")
    hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    top = QHBoxLayout()
    top.addWidget(title)
    top.addStretch(1)
    top.addWidget(hint)

    side_split = QSplitter(Qt.Orientation.Vertical)
    side_split.addWidget(_column(_heading("Runs"), parts.legend))
    side_split.addWidget(_column(_heading("Metrics"), parts.metrics))
    side_split.setSizes([330, 140])
    side_split.setChildrenCollapsible(False)

    params_summary = PlainLabel()
    params_summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    show_all = QCheckBox("Show all")
    show_all.setToolTip("Also list the parameters that are the same in every run")
    params_head = QHBoxLayout()
    params_head.addWidget(_heading("Parameters"))
    params_head.addWidget(params_summary, 1)
    params_head.addWidget(show_all)
    export_button = QPushButton("Export CSV…")
    export_button.setToolTip("Save this table (exact values) as a CSV file")
    stats_head = QHBoxLayout()
    stats_head.addWidget(_heading("Last / min / max"))
    stats_head.addStretch(1)
    stats_head.addWidget(export_button)
    tables_split = QSplitter(Qt.Orientation.Horizontal)
    tables_split.addWidget(_column(params_head, parts.params))
    tables_split.addWidget(_column(stats_head, parts.stats))
    tables_split.setSizes([520, 740])
    tables_split.setChildrenCollapsible(False)

    top_split = QSplitter(Qt.Orientation.Horizontal)
    top_split.addWidget(side_split)
    top_split.addWidget(parts.curves)
    top_split.setStretchFactor(1, 1)
    top_split.setSizes([SIDE_PX, 1000])
    top_split.setChildrenCollapsible(False)

    main_split = QSplitter(Qt.Orientation.Vertical)
    main_split.addWidget(top_split)
    main_split.addWidget(tables_split)
    main_split.setStretchFactor(0, 1)
    main_split.setSizes([540, 210])
    main_split.setChildrenCollapsible(False)

    status = PlainLabel()
    status.setStyleSheet("color: palette(dark);")
    status.setWordWrap(True)
    box = QVBoxLayout(window)
    box.setContentsMargins(10, 8, 10, 6)
    box.addLayout(top)
    box.addWidget(main_split, 1)
    box.addWidget(status)
    return CompareUi(title, status, params_summary, show_all, export_button, main_split,
                     top_split, tables_split)
