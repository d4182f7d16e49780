"""The console parser against a corpus of real training output (tests/corpus/
console_lines.jsonl: each line with the project it comes from and the points it holds).
Precision must be 1.0 — a wrong point is worse than none — and recall is reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

from app.core.console.parse import parse_line

CORPUS = Path(__file__).parents[1] / "corpus" / "console_lines.jsonl"
Point = tuple[str, int | None, float]


def _key(point: Point) -> tuple[str, int | None, float | str]:
    series, step, value = point
    return series, step, "nan" if math.isnan(value) else round(value, 12)


def _corpus() -> list[dict]:
    entries = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    for entry in entries:
        assert entry["source"] and isinstance(entry["line"], str), entry
    return entries


def test_the_corpus_is_read_with_precision_one_and_its_recall_is_reported() -> None:
    entries = _corpus()
    wrong: list[str] = []
    expected_total = found_right = 0
    for entry in entries:
        expected = [_key(tuple(p)) for p in entry["points"]]  # type: ignore[arg-type]
        got = [_key(p) for p in parse_line(entry["line"])]
        expected_total += len(expected)
        found_right += sum(1 for p in got if p in expected)
        extra = [p for p in got if p not in expected]
        if extra:
            wrong.append(f"{entry['source']}: {entry['line']!r} gave {extra}")
    assert wrong == []  # precision 1.0: no point the line does not hold
    recall = found_right / expected_total
    print(f"\nconsole corpus: {len(entries)} lines from "
          f"{len({e['source'] for e in entries})} sources, {expected_total} points; "
          f"precision 1.0, recall {recall:.3f}")
    assert recall >= 0.95


def test_lines_without_values_are_in_the_corpus_too() -> None:
    entries = _corpus()
    assert sum(1 for e in entries if not e["points"]) >= 15
    assert len({e["source"].split(":")[0] for e in entries}) >= 15
