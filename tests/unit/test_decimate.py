"""Min/max decimation: spikes survive, edges exact, gaps kept, output a subset of the input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.core.metrics.decimate import decimate, sample_columns


def as_pairs(x: np.ndarray, y: np.ndarray) -> set[tuple[float, float]]:
    return {(float(a), float(b)) for a, b in zip(x, y, strict=True)}


def test_single_spike_and_dip_in_a_million_points_survive() -> None:
    n = 1_000_000
    x = np.arange(n, dtype=np.int64)
    y = np.sin(x / 5000.0)
    y[654_321] = 1e6
    y[123_457] = -1e6
    ox, oy = decimate(x, y, None, 2000)
    assert len(ox) <= 2 * 2000 + 2
    assert 1e6 in oy and -1e6 in oy
    assert ox[np.argmax(oy)] == 654_321 and ox[np.argmin(oy)] == 123_457
    assert (ox[0], oy[0]) == (0, y[0]) and (ox[-1], oy[-1]) == (n - 1, y[-1])
    assert np.all(np.diff(ox) > 0)


def test_small_input_is_returned_unchanged_with_one_point_beyond_each_edge() -> None:
    x = np.arange(10, dtype=np.float64)
    y = x * 2
    ox, oy = decimate(x, y, None, 5)
    assert np.array_equal(ox, x) and np.array_equal(oy, y)
    ox, oy = decimate(x, y, (3.5, 6.2), 100)
    assert ox.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    ox, oy = decimate(x, y, (6.2, 3.5), 100)  # a reversed range means the same
    assert ox.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    ox, _ = decimate(x, y, (0.0, 9.0), 100)
    assert ox.tolist() == x.tolist()  # no point beyond the data to add
    ox, _ = decimate(x, y, (4.2, 4.8), 1)  # between two points: both, so the line crosses
    assert ox.tolist() == [4.0, 5.0]


def test_empty_and_tiny_inputs() -> None:
    empty = np.array([], dtype=np.float64)
    ox, oy = decimate(empty, empty, None, 100)
    assert len(ox) == len(oy) == 0
    ox, oy = decimate(np.array([3]), np.array([1.5]), (0.0, 1.0), 100)
    assert ox.tolist() == [3] and oy.tolist() == [1.5]
    ox, oy = decimate(np.array([1, 2]), np.array([5.0, 6.0]), (10.0, 20.0), 0)
    assert ox.tolist() == [2]  # the range is past the data: the last point only


def test_zoomed_range_keeps_edges_exact_and_extremes_inside() -> None:
    n = 200_000
    x = np.arange(n) * 0.5 + 100.0
    y = np.random.default_rng(3).standard_normal(n)
    y[50_001] = 99.0
    ox, oy = decimate(x, y, (20_000.0, 40_000.0), 300)
    lo = np.searchsorted(x, 20_000.0) - 1
    hi = np.searchsorted(x, 40_000.0, side="right") + 1
    assert (ox[0], oy[0]) == (x[lo], y[lo]) and (ox[-1], oy[-1]) == (x[hi - 1], y[hi - 1])
    assert ox[0] < 20_000.0 < ox[1] and ox[-2] <= 40_000.0 < ox[-1]
    assert 99.0 in oy and len(ox) <= 2 * 300 + 2
    assert oy.max() == y[lo:hi].max() and oy.min() == y[lo:hi].min()


def test_nan_only_columns_keep_a_gap_and_nan_is_ignored_for_extremes() -> None:
    n = 100_000
    x = np.arange(n, dtype=np.int64)
    y = np.cos(x / 100.0)
    y[40_000:60_000] = np.nan  # a fifth of the range: whole columns of NaN
    y[10] = np.nan
    y[70_000] = np.inf
    ox, oy = decimate(x, y, None, 100)
    nan_x = ox[np.isnan(oy)]
    assert len(nan_x) > 0 and np.all((nan_x >= 40_000) & (nan_x < 60_000))
    assert np.inf in oy
    finite = oy[np.isfinite(oy)]
    assert finite.min() == np.nanmin(np.where(np.isinf(y), np.nan, y))


def test_equal_x_and_constant_series() -> None:
    x = np.repeat(np.arange(1000), 100)  # 100 points per x
    y = np.zeros(len(x))
    y[55_555] = 7.0
    ox, oy = decimate(x, y, None, 50)
    assert 7.0 in oy and len(ox) <= 102
    same = np.full(10_000, 5.0)
    ox, oy = decimate(same, np.arange(10_000, dtype=float), None, 10)
    assert oy[0] == 0.0 and oy[-1] == 9999.0 and len(ox) <= 4


def test_unsorted_or_nan_x_is_refused() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        decimate(np.array([1.0, 3.0, 2.0]), np.zeros(3), None, 10)
    with pytest.raises(ValueError, match="non-decreasing"):
        decimate(np.array([1.0, np.nan, 2.0]), np.zeros(3), None, 10)
    with pytest.raises(ValueError, match="equal length"):
        decimate(np.arange(3), np.zeros(4), None, 10)


@st.composite
def curves(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 400))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 3)))
    x = np.cumsum(steps)
    y = draw(hnp.arrays(np.float64, n, elements=st.one_of(
        st.floats(-1e300, 1e300), st.just(np.nan), st.just(np.inf), st.just(-np.inf))))
    return x, y


@settings(max_examples=300, deadline=None)
@given(
    curves(),
    st.integers(1, 60),
    st.one_of(st.none(), st.tuples(st.floats(-50, 700), st.floats(-50, 700))),
)
def test_properties(curve: tuple[np.ndarray, np.ndarray], pixels: int,
                    x_range: tuple[float, float] | None) -> None:
    x, y = curve
    ox, oy = decimate(x, y, x_range, pixels)
    assert len(ox) == len(oy) <= 2 * pixels + 4
    if len(x) == 0:
        return
    assert np.all(np.diff(ox) >= 0)
    # Every output point is an input point (NaN compared by position: NaN != NaN).
    pairs = as_pairs(x, np.nan_to_num(y, nan=12345.0))
    assert as_pairs(ox, np.nan_to_num(oy, nan=12345.0)) <= pairs
    if x_range is None:
        lo, hi = 0, len(x)
    else:
        a, b = sorted(x_range)
        lo = max(int(np.searchsorted(x, a)) - 1, 0)
        hi = min(int(np.searchsorted(x, b, side="right")) + 1, len(x))
    visible = y[lo:hi]
    if len(visible) == 0:
        assert len(ox) == 0
        return
    assert (ox[0], ox[-1]) == (x[lo], x[hi - 1])
    assert np.array_equal(oy[[0, -1]], visible[[0, -1]], equal_nan=True)
    if np.all(np.isnan(visible)):
        assert np.all(np.isnan(oy))
    else:
        assert np.nanmax(oy) == np.nanmax(visible) and np.nanmin(oy) == np.nanmin(visible)


@settings(max_examples=300, deadline=None)
@given(
    curves(),
    st.integers(1, 60),
    st.one_of(st.none(), st.tuples(st.floats(-50, 700), st.floats(-50, 700))),
)
def test_sample_columns_properties(curve: tuple[np.ndarray, np.ndarray], pixels: int,
                                   x_range: tuple[float, float] | None) -> None:
    x, y = curve
    ox, oy = sample_columns(x, y, x_range, pixels)
    assert len(ox) == len(oy) <= pixels + 2
    if len(x) == 0:
        return
    # In order, every output point an input point, the visible slice's ends exact.
    assert np.all(np.diff(ox) >= 0)
    pairs = as_pairs(x, np.nan_to_num(y, nan=12345.0))
    assert as_pairs(ox, np.nan_to_num(oy, nan=12345.0)) <= pairs
    full_x, _ = decimate(x, y, x_range, 10**6)  # everything visible, undecimated
    if len(full_x) == 0:
        assert len(ox) == 0
        return
    assert (ox[0], ox[-1]) == (full_x[0], full_x[-1])


def test_sample_columns_takes_one_point_per_column_of_a_long_line() -> None:
    x = np.arange(1_000_000, dtype=np.float64)
    y = np.sin(x / 1e5)
    ox, oy = sample_columns(x, y, None, 1000)
    # The exact first and last points, and between them the last point of every column.
    assert len(ox) == 1002
    assert (ox[0], ox[-1]) == (0.0, 999_999.0)
    assert np.all(np.diff(ox[1:-2]) == 1000)  # evenly spread: one per column
    assert np.array_equal(oy, np.sin(ox / 1e5))
    zx, _ = sample_columns(x, y, (250_000.0, 260_000.0), 100)
    assert zx[0] == 249_999.0 and zx[-1] == 260_001.0 and len(zx) <= 102
