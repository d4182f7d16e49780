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

__all__ = ["decimate"]


def decimate(
    x: np.ndarray,
    y: np.ndarray,
    x_range: tuple[float, float] | None,
    pixels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Points of (x, y) to draw in ``pixels`` columns over ``x_range`` (None: all of x)."""
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D and of equal length (got {x.shape}, {y.shape})")
    pixels = max(1, int(pixels))
    n = len(x)
    if n == 0:
        return x[:0], y[:0]
    if n > 1 and not bool(np.all(x[1:] >= x[:-1])):
        raise ValueError("x must be non-decreasing and free of NaN: sort the series by x first")
    if x_range is None:
        lo, hi = 0, n
        x0, x1 = float(x[0]), float(x[-1])
    else:
        x0, x1 = sorted((float(x_range[0]), float(x_range[1])))
        # One point beyond each edge, so the line runs to the border of the view.
        lo = max(int(np.searchsorted(x, x0, side="left")) - 1, 0)
        hi = min(int(np.searchsorted(x, x1, side="right")) + 1, n)
    if hi - lo <= 2 * pixels:
        return x[lo:hi], y[lo:hi]
    # The interior (everything but the exact first and last points) lies inside [x0, x1].
    xi = x[lo + 1 : hi - 1]
    yi = y[lo + 1 : hi - 1]
    m = len(xi)
    if x1 > x0:
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
    else:
        starts = np.zeros(1, dtype=np.intp)
    counts = np.diff(np.append(starts, m))
    lows = np.fmin.reduceat(yi, starts)
    highs = np.fmax.reduceat(yi, starts)
    low_at = _first_equal(yi, lows, starts, counts)
    high_at = _first_equal(yi, highs, starts, counts)
    picked = np.unique(np.concatenate([[-1], low_at, high_at, [m]])) + (lo + 1)
    return x[picked], y[picked]


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
