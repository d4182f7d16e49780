"""The last/min/max table: rows updated in place, columns widened only when text grows."""

from __future__ import annotations

import math

import pytest
from PySide6.QtGui import QColor

from app.core.metrics.metricstore import SeriesInfo
from app.ui.curves.series_table import COLUMNS, SeriesTable

pytestmark = pytest.mark.gui


def info(count: int, last: float, name: str = "loss") -> SeriesInfo:
    return SeriesInfo(name, count, 0, count - 1, last, min(last, 0.5), max(last, 2.0))


def test_rows_update_in_place_and_columns_grow_when_text_does(qtbot) -> None:
    table = SeriesTable()
    qtbot.addWidget(table)
    table.resize(900, 200)
    table.show()
    red = QColor("red")
    table.update_infos({"r1": [info(10, 1.0)]}, {"r1": "run one"}, {("r1", "loss"): red})
    assert table.rowCount() == 1
    assert table.value_at("r1", "loss", "Points") == 10
    points = COLUMNS.index("Points")
    narrow = table.columnWidth(points)
    text_items = table.item(0, 0)
    # A much longer number: its column widens so the text fits.
    table.update_infos({"r1": [info(10**14, 1.5)]}, {"r1": "run one"}, {("r1", "loss"): red})
    assert table.item(0, points).text() == f"{10**14:,}"
    assert table.columnWidth(points) > narrow
    needed = table.fontMetrics().horizontalAdvance(f"{10**14:,}")
    assert table.columnWidth(points) >= needed
    assert table.item(0, 0) is text_items  # the same row and items, updated in place
    assert table.value_at("r1", "loss", "Last") == 1.5
    # A second run: rows are named by run, and NaN reads as NaN.
    table.update_infos({"r1": [info(10**14, 1.5)], "r2": [info(3, math.nan)]},
                       {"r1": "run one", "r2": "run two"}, {})
    assert table.rowCount() == 2
    assert table.item(1, 0).text() == "run two · loss"
    assert table.item(1, COLUMNS.index("Last")).text() == "NaN"
