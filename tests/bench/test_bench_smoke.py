"""Smoke test of the benchmark suite's plumbing (tests/bench/run.py): two groups at tiny
sizes in child interpreters, results.json and BENCHMARKS.md written with their schema.

Benchmarks are not timed tests: nothing here looks at how fast anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.benchlib import FIELDS, figure, ratio_of

REPO = Path(__file__).resolve().parents[2]


def test_ratio_reads_times_better_than_the_baseline() -> None:
    assert ratio_of(2.0, 10.0, higher_is_better=False) == 5.0  # a time: baseline ÷ ours
    assert ratio_of(10.0, 2.0, higher_is_better=True) == 5.0  # a throughput: ours ÷ baseline
    assert ratio_of(1.0, None, higher_is_better=False) is None
    row = figure("x", 2.0, "ms", baseline=10.0, min_ratio=10, max_value=5)
    assert row["ratio"] == 5.0 and row["met"] is False
    assert figure("y", 600_000.0, "points/s", min_value=500_000)["met"] is True
    assert figure("z", 1.0, "s")["met"] is None


@pytest.mark.timeout(60)
def test_suite_writes_results_and_table(tmp_path: Path) -> None:
    results, md = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "tests/bench/run.py", "--smoke", "--only", "scheduler,ingest",
         "--results", str(results), "--markdown", str(md)],
        cwd=REPO, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(results.read_text())
    assert data["mode"] == "smoke" and data["machine"] and data["date"]
    rows = data["benchmarks"]
    assert [r["group"] for r in rows] == ["scheduler", "ingest"]
    for row in rows:
        assert set(FIELDS) <= set(row), row
        assert not row.get("error")
        assert isinstance(row["value"], float) and row["value"] > 0
        assert row["target"] and row["unit"]
        if row["baseline"] is None:
            assert row["ratio"] is None
        else:
            expected = ratio_of(row["value"], row["baseline"], row["higher_is_better"])
            assert row["ratio"] == pytest.approx(expected)
    ingest = rows[1]
    assert ingest["unit"] == "points/s" and ingest["higher_is_better"]
    text = md.read_text()
    assert "| figure | Labdeck | baseline | ratio | target | met |" in text
    assert "machine:" in text and "date:" in text
    assert all(r["name"] in text for r in rows)
    assert "| scheduler: one dispatch decision |" in proc.stdout
