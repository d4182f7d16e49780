"""A run's parameters: from its job spec and those the run recorded (labdeck.init, hparams)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.common.plain_text import PlainLabel, display_text, tooltip_text

SPEC = "job spec"
RECORDED = "recorded by the run"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become ``a/b`` keys (the labdeck client flattens the same way)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def merge(spec: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Rows (name, value, source) sorted by name; a differing recorded value says so."""
    spec_f, rec_f = flatten(spec), flatten(recorded)
    rows = []
    for name in sorted(set(spec_f) | set(rec_f)):
        if name in rec_f and name in spec_f:
            a, b = show(spec_f[name]), show(rec_f[name])
            source = f"{SPEC} and run" if a == b else f"{RECORDED} (spec said {a})"
            rows.append((name, b, source))
        elif name in rec_f:
            rows.append((name, show(rec_f[name]), RECORDED))
        else:
            rows.append((name, show(spec_f[name]), SPEC))
    return rows


class ParamsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter parameters")
        self.filter.setClearButtonEnabled(True)
        self.filter.setMaximumWidth(320)
        self.filter.textChanged.connect(self._apply_filter)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(("Parameter", "Value", "Source"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setMinimumSectionSize(120)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.empty = PlainLabel("This run has no parameters: none in its job spec, none recorded.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: palette(mid);")
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.filter)
        box.addWidget(self.table, 1)
        box.addWidget(self.empty, 1)
        self.set_params({}, {})

    def set_params(self, spec: Mapping[str, Any], recorded: Mapping[str, Any]) -> None:
        rows = merge(spec, recorded)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(display_text(text))
                item.setToolTip(tooltip_text(text))
                self.table.setItem(r, c, item)
        self.table.setVisible(bool(rows))
        self.filter.setVisible(bool(rows))
        self.empty.setVisible(not rows)
        self._apply_filter(self.filter.text())

    def rows(self) -> list[tuple[str, ...]]:
        return [tuple(self._text(r, c) for c in range(3)) for r in range(self.table.rowCount())]

    def _text(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for r in range(self.table.rowCount()):
            hay = f"{self._text(r, 0)} {self._text(r, 1)}".lower()
            self.table.setRowHidden(r, bool(needle) and needle not in hay)
