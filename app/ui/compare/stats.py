"""The comparison's summary: last / min / max of every metric of every run, and its CSV.

Values are the metric store's own summary (``SeriesInfo``, kept on ingest: min and max
ignore NaN), shown to four digits; the exact floats sit behind each cell and go into the
CSV with ``repr``, so an export round-trips.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from app.core.safetext import csv_text
from app.ui.common.plain_text import display_text
from app.ui.compare.data import RunSnapshot
from app.ui.compare.legend import swatch
from app.ui.curves.curve_data import series_order
from app.ui.curves.series_table import VALUE_ROLE, format_value

COLUMNS = ("Metric", "Run", "Last", "Min", "Max", "Last step", "Points")
CSV_HEADER = ("metric", "run", "run_id", "last", "min", "max", "last_step", "points")


@dataclass(frozen=True, slots=True)
class StatRow:
    metric: str
    run_id: str
    label: str
    last: float
    min: float
    max: float
    last_step: int | None
    points: int


def stat_rows(snapshots: Sequence[RunSnapshot], labels: Mapping[str, str],
              order: Callable[[str], Any] = series_order) -> list[StatRow]:
    """A row per (metric, run): metrics in plot order, runs in comparison order."""
    rows = [StatRow(info.name, s.run_id, labels.get(s.run_id, s.name), info.last_value,
                    info.min_value, info.max_value, info.last_step, info.count)
            for s in snapshots for info in s.infos]
    position = {s.run_id: i for i, s in enumerate(snapshots)}
    return sorted(rows, key=lambda r: (order(r.metric), position[r.run_id]))


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value)


def write_stats_csv(rows: Sequence[StatRow], path: str | Path) -> int:
    """Write ``rows`` (header first) next to ``path`` and rename; returns the row count."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_HEADER)
            for r in rows:
                # Names and labels are the runs' text (formula-guarded); numbers stay numbers.
                writer.writerow((csv_text(r.metric), csv_text(r.label), csv_text(r.run_id),
                                 _number(r.last), _number(r.min),
                                 _number(r.max), "" if r.last_step is None else r.last_step,
                                 r.points))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(rows)


class StatsTable(QTableWidget):
    """Rebuilt only when the set of rows changes; otherwise cells change in place, so the
    selection and scroll position survive live updates."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.horizontalHeader()
        header.setMinimumSectionSize(64)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.rows: list[StatRow] = []

    def set_rows(self, rows: Sequence[StatRow], colors: Mapping[str, QColor]) -> None:
        keys = [(r.metric, r.run_id) for r in rows]
        rebuilt = keys != [(r.metric, r.run_id) for r in self.rows]
        self.rows = list(rows)
        if rebuilt:
            self.setRowCount(len(rows))
        for i, r in enumerate(rows):
            first = i == 0 or rows[i - 1].metric != r.metric
            # The metric's name only on its first row: the table reads as groups.
            self._set(i, 0, r.metric if first else "", r.metric)
            run = self._set(i, 1, r.label, r.run_id)
            color = colors.get(r.run_id)
            if color is not None and (rebuilt or run.data(Qt.ItemDataRole.DecorationRole)
                                      is None):
                run.setIcon(swatch(color))
            self._set(i, 2, format_value(r.last), r.last, right=True)
            self._set(i, 3, format_value(r.min), r.min, right=True)
            self._set(i, 4, format_value(r.max), r.max, right=True)
            self._set(i, 5, "–" if r.last_step is None else f"{r.last_step:,}", r.last_step,
                      right=True)
            self._set(i, 6, f"{r.points:,}", r.points, right=True)
        if rebuilt:
            self.resizeColumnsToContents()

    def recolor(self, colors: Mapping[str, QColor]) -> None:
        for i, r in enumerate(self.rows):
            item = self.item(i, 1)
            if item is not None and r.run_id in colors:
                item.setIcon(swatch(colors[r.run_id]))

    def value_at(self, run_id: str, metric: str, column: str) -> Any:
        """The exact value behind a cell (``column`` one of ``COLUMNS``)."""
        for i, r in enumerate(self.rows):
            if (r.run_id, r.metric) == (run_id, metric):
                item = self.item(i, COLUMNS.index(column))
                return None if item is None else item.data(VALUE_ROLE)
        return None

    def _set(self, row: int, col: int, text: str, value: Any,
             right: bool = False) -> QTableWidgetItem:
        text = display_text(text)  # run and series names come from runs and hosts
        item = self.item(row, col)
        if item is None:
            item = QTableWidgetItem()
            if right:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(row, col, item)
        if item.text() != text:
            item.setText(text)
        if item.data(VALUE_ROLE) != value:
            item.setData(VALUE_ROLE, value)
        return item
