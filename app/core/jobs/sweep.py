"""Grid sweeps: every combination of a few parameters' values, one run each.

``{"lr": [1e-3, 3e-4], "seed": [0, 1, 2]}`` is six combinations, in the order the keys
and values were written (the last key varies fastest), and the run names say which one
they are: ``name-lr=0.001-seed=0``. The size is checked before anything is built, so a
typo that asks for a million runs is an error, not a frozen app.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.jobs.argparams import format_value

MAX_COMBINATIONS = 10_000


class SweepTooLarge(ValueError):
    """The grid has more combinations than the limit; the message says how many."""

    def __init__(self, count: int, sizes: Mapping[str, int], limit: int) -> None:
        self.count = count
        self.limit = limit
        factors = " × ".join(f"{k} {n}" for k, n in sizes.items())
        super().__init__(
            f"{count:,} combinations ({factors}) is more than the limit of {limit:,}; "
            "split the sweep into smaller files"
        )


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    """How many combinations ``grid`` expands to (1 for an empty grid)."""
    return math.prod(len(values) for values in grid.values())


def expand_grid(
    grid: Mapping[str, Sequence[Any]], limit: int = MAX_COMBINATIONS
) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as one ``{key: value}`` dict each.

    An empty grid is one empty combination (a single run). Raises :class:`SweepTooLarge`
    when there are more than ``limit`` combinations, before building any of them.
    """
    count = grid_size(grid)
    if count > limit:
        raise SweepTooLarge(count, {k: len(v) for k, v in grid.items()}, limit)
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def sweep_name(base: str, combo: Mapping[str, Any]) -> str:
    """``sweep_name("train", {"lr": 0.001, "seed": 0})`` → ``"train-lr=0.001-seed=0"``."""
    parts = [base] + [f"{key}={_name_part(value)}" for key, value in combo.items()]
    return "-".join(parts)


def _name_part(value: Any) -> str:
    # Names are shown on one line: control characters (a newline in a string value)
    # would break tables and logs, so they are shown as "?".
    return "".join(ch if ch.isprintable() else "?" for ch in format_value(value))
