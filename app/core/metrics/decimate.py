"""Min/max decimation of a curve for drawing: at most ~2 points per pixel column.

``decimate(x, y, x_range, pixels)`` keeps, in every pixel column of the visible x range,
the point with the smallest and the one with the largest y, in their original order, so
a single spike or dip among a million points still reaches the screen. The first and
last points of the visible slice (which include one point beyond each edge, so lines
reach the borders) are kept exactly. A column whose points are all NaN keeps one NaN so
the gap stays visible (draw with ``connect="finite"``). Every output point is an input
point. O(n) and vectorised: column boundaries come from ``searchsorted`` on the edges and
per-column extremes from ``np.fmin/fmax.reduceat``; the argmin/argmax of each column is
the first point equal to its extreme (a ``searchsorted`` into the matches).

``x`` must be non-decreasing and NaN-free (equal x values are fine): steps or wall times
in the order ``MetricStore.points`` gives them; sort first if a series came out of order.
A ``ValueError`` says so otherwise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decimate", "sample_columns"]


def decimate(
    x: np.ndarray,
    y: np.ndarray,
    x_range: tuple[float, float] | None,
    pixels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Points of (x, y) to draw in ``pixels`` columns over ``x_range`` (None: all of x)."""
    x, y = _checked(x, y)
    pixels = max(1, int(pixels))
    n = len(x)
    if n == 0:
        return x[:0], y[:0]
    if n > 1 and not bool(np.all(x[1:] >= x[:-1])):
        raise ValueError("x must be non-decreasing and free of NaN: sort the series by x first")
    lo, hi, x0, x1 = _visible(x, x_range)
    if hi - lo <= 2 * pixels:
        return x[lo:hi], y[lo:hi]
    # The interior (everything but the exact first and last points) lies inside [x0, x1].
    xi = x[lo + 1 : hi - 1]
    yi = y[lo + 1 : hi - 1]
    m = len(xi)
    starts = _column_starts(xi, x0, x1, pixels)
    counts = np.diff(np.append(starts, m))
    lows = np.fmin.reduceat(yi, starts)
    highs = np.fmax.reduceat(yi, starts)
    low_at = _first_equal(yi, lows, starts, counts)
    high_at = _first_equal(yi, highs, starts, counts)
    # Per column its two picks in order; columns are in order, so this is sorted.
    pairs = np.empty(2 * len(starts), dtype=np.intp)
    pairs[0::2] = np.minimum(low_at, high_at)
    pairs[1::2] = np.maximum(low_at, high_at)
    keep = np.ones(len(pairs), dtype=bool)
    keep[1:] = pairs[1:] != pairs[:-1]  # a column whose low is its high: once
    picked = np.concatenate([[-1], pairs[keep], [m]]) + (lo + 1)
    return x[picked], y[picked]


def sample_columns(
    x: np.ndarray,
    y: np.ndarray,
    x_range: tuple[float, float] | None,
    pixels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One point per pixel column (the last one in it) of a smooth line, first and last kept.

    For curves that barely move within a column (a smoothed loss): half the points of
    ``decimate`` and O(pixels · log n) instead of O(n). A lone spike or NaN inside a
    column is not guaranteed to show; use ``decimate`` for raw data. ``x`` must be
    sorted as for ``decimate`` (not checked here: that would cost the O(n) it saves).
    """
    x, y = _checked(x, y)
    pixels = max(1, int(pixels))
    if len(x) == 0:
        return x[:0], y[:0]
    lo, hi, x0, x1 = _visible(x, x_range)
    if hi - lo <= pixels + 2:
        return x[lo:hi], y[lo:hi]
    xi = x[lo + 1 : hi - 1]
    m = len(xi)
    starts = _column_starts(xi, x0, x1, pixels)
    lasts = np.append(starts[1:], m) - 1  # strictly increasing, from >= 0 to m - 1
    picked = np.concatenate([[-1], lasts, [m]]) + (lo + 1)
    return x[picked], y[picked]


def _checked(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D and of equal length (got {x.shape}, {y.shape})")
    return x, y


def _visible(x: np.ndarray, x_range: tuple[float, float] | None) -> tuple[int, int, float, float]:
    """Index bounds [lo, hi) of what is drawn, and the x range the columns divide."""
    n = len(x)
    if x_range is None:
        return 0, n, float(x[0]), float(x[-1])
    x0, x1 = sorted((float(x_range[0]), float(x_range[1])))
    # One point beyond each edge, so the line runs to the border of the view.
    lo = max(int(np.searchsorted(x, x0, side="left")) - 1, 0)
    hi = min(int(np.searchsorted(x, x1, side="right")) + 1, n)
    return lo, hi, x0, x1


def _column_starts(xi: np.ndarray, x0: float, x1: float, pixels: int) -> np.ndarray:
    """Index of the first point of every non-empty column of [x0, x1] (starts with 0)."""
    m = len(xi)
    if not x1 > x0:
        return np.zeros(1, dtype=np.intp)
    edges = x0 + (x1 - x0) * (np.arange(pixels, dtype=np.float64) / pixels)
    if np.issubdtype(xi.dtype, np.integer):
        # Same columns (x >= e  <=>  x >= ceil(e) for integers), without casting all
        # of x to float inside searchsorted.
        edges = np.ceil(edges).astype(xi.dtype)
    starts = np.searchsorted(xi, edges, side="left")
    # Empty columns share a start with the next one; keep each non-empty column once.
    keep = np.empty(len(starts), dtype=bool)
    keep[:-1] = starts[:-1] != starts[1:]
    keep[-1] = True
    starts = starts[keep & (starts < m)]
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    return starts


def _first_equal(
    y: np.ndarray, extremes: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Per column, the index of its first point equal to the column's extreme.

    A NaN-only column (extreme NaN, nothing equal) gives its first point, itself NaN.
    """
    matches = np.flatnonzero(y == np.repeat(extremes, counts))
    at = np.searchsorted(matches, starts, side="left")
    found = matches[np.minimum(at, len(matches) - 1)] if len(matches) else starts
    nan_columns = np.isnan(extremes)
    return np.where(nan_columns, starts, found)
