"""How the runs table goes from one id list to the next without a reset (Qt-free).

Worked out on the worker thread, applied by the model on the GUI thread, in this order:
rows that left are removed (ranges of the old list), the rows that stayed are put in their
new order if it changed (a layout change: the selection moves with them), and the rows
that arrived are inserted (ranges of the new list). Only a change too scattered to say in
``MAX_RANGES`` ranges (another process rewrote thousands of runs) becomes a reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Beyond this many ranges, one layout change is cheaper for the view than many signals.
MAX_RANGES = 64


@dataclass(frozen=True, slots=True)
class Plan:
    kind: str  # "same", "ranges" or "reset"
    removed: tuple[tuple[int, int], ...] = ()
    inserted: tuple[tuple[int, int], ...] = ()
    positions: dict[str, int] = field(default_factory=dict)  # id → row in the new list
    # The rows that stayed, in their new order, when that order changed (else empty).
    reordered: tuple[str, ...] = ()


def ranges(rows: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Ascending row numbers as (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][1] == r - 1:
            out[-1] = (out[-1][0], r)
        else:
            out.append((r, r))
    return tuple(out)


def plan_changes(old: Sequence[str], new: Sequence[str]) -> Plan:
    if old == new:
        return Plan("same")
    positions = {run_id: i for i, run_id in enumerate(new)}
    old_set = set(old)
    kept_old = [run_id for run_id in old if run_id in positions]
    kept_new = [run_id for run_id in new if run_id in old_set]
    removed = ranges([i for i, run_id in enumerate(old) if run_id not in positions])
    inserted = ranges([i for i, run_id in enumerate(new) if run_id not in old_set])
    if len(removed) + len(inserted) > MAX_RANGES:
        return Plan("reset", positions=positions)
    reordered = tuple(kept_new) if kept_old != kept_new else ()
    return Plan("ranges", removed, inserted, positions, reordered)
