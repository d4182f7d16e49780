"""Grid expansion: counts, order, names and the size limit."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.jobs.sweep import MAX_COMBINATIONS, SweepTooLarge, expand_grid, grid_size, sweep_name


def test_expands_in_written_order_last_key_fastest() -> None:
    combos = expand_grid({"lr": [1e-3, 3e-4], "seed": [0, 1, 2]})
    assert combos == [
        {"lr": 1e-3, "seed": 0}, {"lr": 1e-3, "seed": 1}, {"lr": 1e-3, "seed": 2},
        {"lr": 3e-4, "seed": 0}, {"lr": 3e-4, "seed": 1}, {"lr": 3e-4, "seed": 2},
    ]
    assert [sweep_name("train", c) for c in combos[:2]] == [
        "train-lr=0.001-seed=0", "train-lr=0.001-seed=1"]
    assert sweep_name("t", combos[3]) == "t-lr=0.0003-seed=0"


def test_empty_grid_is_one_run() -> None:
    assert expand_grid({}) == [{}]
    assert grid_size({}) == 1


def test_names_show_values_on_one_line() -> None:
    assert sweep_name("x", {"amp": True, "opt": "adam w", "s": "a\nb\tc"}) == (
        "x-amp=true-opt=adam w-s=a?b?c")


def test_too_many_combinations_is_refused_before_building() -> None:
    # range() has a length without materialising: the check must not build 10**12 dicts.
    grid = {"a": range(10**6), "b": range(10**6)}
    with pytest.raises(SweepTooLarge) as info:
        expand_grid(grid)
    assert info.value.count == 10**12
    assert str(info.value) == (
        "1,000,000,000,000 combinations (a 1000000 × b 1000000) is more than the limit of "
        "10,000; split the sweep into smaller files")


def test_limit_is_inclusive() -> None:
    assert len(expand_grid({"a": range(100), "b": range(100)})) == MAX_COMBINATIONS
    with pytest.raises(SweepTooLarge):
        expand_grid({"a": range(100), "b": range(101)})
    assert len(expand_grid({"a": [1, 2, 3]}, limit=3)) == 3
    with pytest.raises(SweepTooLarge, match="4 combinations"):
        expand_grid({"a": [1, 2], "b": [1, 2]}, limit=3)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True),
                       st.lists(st.integers(), min_size=1, max_size=5, unique=True),
                       max_size=4))
def test_every_combination_exactly_once(grid: dict[str, list[Any]]) -> None:
    combos = expand_grid(grid)
    assert len(combos) == grid_size(grid) == math.prod(len(v) for v in grid.values())
    assert len({tuple(c.items()) for c in combos}) == len(combos)
    assert all(list(c) == list(grid) and all(c[k] in grid[k] for k in c) for c in combos)
    names = [sweep_name("n", c) for c in combos]
    assert len(set(names)) == len(names)
