"""The last / min / max table under a curve panel, one row per (run, series)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from app.ui.common.plain_text import display_text

COLUMNS = ("Series", "Last", "Min", "Max", "Last step", "Points")
VALUE_ROLE = Qt.ItemDataRole.UserRole  # the exact float behind a rounded cell
CELL_PADDING_PX = 16  # room a cell's text needs beside its advance (margins, focus frame)


def format_value(value: float | None) -> str:
    """Four significant digits; non-finite values spelled out, missing as an en dash."""
    if value is None:
        return "–"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.4g}"


class SeriesTable(QTableWidget):
    """Rows are updated in place so the user's selection and scroll position survive."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignRight
                                                    | Qt.AlignmentFlag.AlignVCenter)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        header = self.horizontalHeader()
        header.setMinimumSectionSize(80)
        header.setStretchLastSection(False)
        # Sized once per update (resizeColumnsToContents): ResizeToContents would measure
        # every row again for each changed cell, 100 ms a frame with 20 runs.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self._rows: dict[tuple[str, str], int] = {}
        # What each row shows now: an unchanged row is skipped without touching a cell.
        self._shown: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._too_narrow = False

    def wanted_height(self, max_rows: int = 6) -> int:
        """Height that shows up to ``max_rows`` rows without scrolling."""
        rows = min(max(self.rowCount(), 1), max_rows)
        return (self.horizontalHeader().height() + rows * self.verticalHeader()
                .defaultSectionSize() + 2 * self.frameWidth() + 2)

    def update_infos(self, infos: Mapping[str, Sequence[Any]], labels: Mapping[str, str],
                     colors: Mapping[tuple[str, str], QColor],
                     order: Callable[[str], Any] = str) -> None:
        """``infos``: run id → ``SeriesInfo`` list (name, count, last_step, last/min/max)."""
        several = len(infos) > 1
        for run_id, series in infos.items():
            for info in sorted(series, key=lambda i: order(i.name)):
                key = (run_id, info.name)
                name = f"{labels.get(run_id, run_id)} · {info.name}" if several else info.name
                color = colors.get(key)
                shown = (info, name, None if color is None else color.rgba())
                if self._shown.get(key) == shown:
                    continue
                self._shown[key] = shown
                row = self._rows.get(key)
                if row is None:
                    row = self._rows[key] = self.rowCount()
                    self.insertRow(row)
                self._set(row, 0, name, None, color)
                self._set(row, 1, format_value(info.last_value), info.last_value)
                self._set(row, 2, format_value(info.min_value), info.min_value)
                self._set(row, 3, format_value(info.max_value), info.max_value)
                step = info.last_step
                self._set(row, 4, "–" if step is None else f"{int(step):,}", step)
                self._set(row, 5, f"{int(info.count):,}", info.count)
        if self._too_narrow:
            # Only when a text no longer fits: measuring every row each frame costs
            # ~10 ms with a hundred runs.
            self.resizeColumnsToContents()
            self._too_narrow = False

    def row_of(self, run_id: str, series: str) -> int | None:
        return self._rows.get((run_id, series))

    def value_at(self, run_id: str, series: str, column: str) -> Any:
        """The exact value behind a cell (tests and copy use it)."""
        row = self._rows.get((run_id, series))
        if row is None:
            return None
        item = self.item(row, COLUMNS.index(column))
        return None if item is None else item.data(VALUE_ROLE)

    def _set(self, row: int, col: int, text: str, value: Any,
             color: QColor | None = None) -> None:
        text = display_text(text)  # series names come from the run
        item = self.item(row, col)
        if item is None:
            item = QTableWidgetItem()
            if col > 0:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(row, col, item)
        if item.text() != text:
            item.setText(text)
            if not self._too_narrow:
                needed = self.fontMetrics().horizontalAdvance(text) + CELL_PADDING_PX
                self._too_narrow = needed > self.columnWidth(col)
        if item.data(VALUE_ROLE) != value:
            item.setData(VALUE_ROLE, value)
        if color is not None and item.foreground().color() != color:
            item.setForeground(color)
