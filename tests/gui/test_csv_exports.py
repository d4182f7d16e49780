"""The window's CSV exports (run metrics, comparison summary): a name a run chose never
becomes a spreadsheet formula, and the numbers stay numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.store import Store
from app.ui.compare.stats import StatRow, write_stats_csv
from app.ui.curves.export import write_metrics_csv
from ssh_backend.protocol import MetricPoint, TailChunk

pytestmark = pytest.mark.gui

FORMULAS = ['=HYPERLINK("http://x")', "+1+2", "@SUM(A1)", "-2+3"]


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1:]


def test_run_metrics_csv_guards_series_names(tmp_path: Path) -> None:
    with Store.open(tmp_path / "labdeck.sqlite3") as store:
        metrics = MetricStore(store)
        points = tuple(MetricPoint(name, 1, 1700000000.0, -0.5) for name in [*FORMULAS, "loss"])
        metrics.ingest([("ws1", TailChunk("r1", "metrics.jsonl", 1, 0, 100, points=points))])
        assert write_metrics_csv(metrics, "r1", tmp_path / "m.csv") == len(points)
    rows = read(tmp_path / "m.csv")
    assert sorted(row[0] for row in rows) == sorted(["'" + f for f in FORMULAS] + ["loss"])
    assert {row[3] for row in rows} == {"-0.5"}


def test_comparison_summary_csv_guards_metric_and_run_labels(tmp_path: Path) -> None:
    rows = [StatRow(f, "r1", f, -1.5, -2.0, 3.0, 4, 5) for f in FORMULAS]
    assert write_stats_csv(rows, tmp_path / "s.csv") == len(rows)
    written = read(tmp_path / "s.csv")
    assert [row[:3] for row in written] == [["'" + f, "'" + f, "r1"] for f in FORMULAS]
    assert {tuple(row[3:]) for row in written} == {("-1.5", "-2.0", "3.0", "4", "5")}
