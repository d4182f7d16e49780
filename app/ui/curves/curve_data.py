"""What a curve panel draws, computed on the data worker: x mode, smoothing, decimation.

Plain numpy (no Qt), so it runs on the worker thread: ``SeriesCache`` keeps each series'
points as read from the ``MetricStore`` (re-read only when its point count changed) and
turns them into ``CurveFrame``s of at most ~2 points per pixel for the visible x range.
Smoothing is TensorBoard's debiased EMA and happens before decimation, so spikes still
show in the faint raw curve behind the smoothed one.

Live runs append a few points per tick: points that only grew are smoothed from the last
EMA state on (not from the first point again), and a trace whose inputs did not change
gets the very same ``CurveFrame`` object back, which tells the panel to leave its curves
alone (``setData`` and the repaint it causes are the GUI thread's main cost).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.core.metrics.decimate import decimate, sample_columns


class XMode(enum.StrEnum):
    STEP = "step"
    WALL = "wall"
    RELATIVE = "relative"


class PointSource(Protocol):
    """The part of ``MetricStore`` the curves read (any thread)."""

    def series(self, run_id: str) -> list[Any]: ...

    def points(self, run_id: str, series: str) -> Any: ...

    def points_since(self, run_id: str, series: str, start: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class CurveFrame:
    """One trace ready for ``setData``: raw and smoothed, both decimated."""

    run_id: str
    series: str
    x_raw: np.ndarray
    y_raw: np.ndarray
    x_smooth: np.ndarray
    y_smooth: np.ndarray
    count: int  # points stored, before decimation
    # Every x finite and every y finite and > 0, in both curves: drawn the same in linear
    # and log y, so pyqtgraph's per-update finite check can be skipped.
    plain: bool = False

    def draw_opts(self) -> dict[str, object]:
        """``setData`` options: plain data needs no per-update finite check by pyqtgraph."""
        return {"connect": "all", "skipFiniteCheck": True} if self.plain else {"connect": "auto"}


def ema_debiased(y: np.ndarray, beta: float) -> np.ndarray:
    """TensorBoard's smoothing: ``ema_t = β·ema_{t-1} + (1-β)·y_t``, divided by ``1-β^t``.

    Non-finite values are passed through and do not enter the average (TensorBoard does
    the same), so a single NaN does not wipe out the rest of the curve. Vectorised in
    blocks: inside a block the recursion is a scaled cumulative sum; blocks are short
    enough that the scale ``β^-k`` stays far from overflow.
    """
    y = np.asarray(y, dtype=np.float64)
    if beta <= 0.0 or y.size == 0:
        return y.copy()
    out = y.copy()
    finite = np.isfinite(y)
    values = y[finite]
    n = values.size
    if n == 0:
        return out
    ln_b = math.log(beta)
    block = int(max(1, min(4096, 40.0 / -ln_b)))
    rows = -(-n // block)
    padded = np.zeros(rows * block)
    padded[:n] = values
    grid = padded.reshape(rows, block)
    j = np.arange(block, dtype=np.float64)
    up = np.exp(-ln_b * j)  # β^-j
    down = np.exp(ln_b * j)  # β^j
    with np.errstate(over="ignore", invalid="ignore"):
        local = (1.0 - beta) * down * np.cumsum(grid * up, axis=1)
    # Carry each block's final average into the next, E_b = F·E_{b-1} + local_b[-1] with
    # F = β^B: a prefix scan by doubling, stopping once F^s underflows (a few rounds).
    ends = local[:, -1].copy()
    factor = beta ** block
    shift = 1
    while shift < rows and factor > 0.0:
        ends[shift:] = ends[shift:] + factor * ends[:-shift].copy()
        factor *= factor
        shift *= 2
    carry_in = np.concatenate(([0.0], ends[:-1]))
    ema = local + carry_in[:, None] * (down * beta)[None, :]
    ema = ema.reshape(-1)[:n]
    t = np.arange(1, n + 1, dtype=np.float64)
    with np.errstate(under="ignore"):
        debias = -np.expm1(t * ln_b)  # 1 - β^t, exact for small t
    smoothed = ema / debias
    smoothed[0] = values[0]  # (1-β)·y/(1-β) may round differently; it is y exactly
    if not np.all(np.isfinite(smoothed)):
        smoothed = _ema_loop(values, beta)  # values near the float limit: go slowly
    out[finite] = smoothed
    return out


def ema_continue(y: np.ndarray, beta: float, last: float, count: int) -> np.ndarray:
    """``ema_debiased`` of ``y`` as if it followed ``count`` finite values whose smoothed
    (debiased) average ended at ``last``: what appended points need, in O(len(y))."""
    tail = ema_debiased(y, beta)
    if beta <= 0.0 or count <= 0 or y.size == 0:
        return tail
    finite = np.isfinite(tail)
    k = np.cumsum(finite)[finite].astype(np.float64)  # finite values so far in the tail
    ln_b = math.log(beta)
    with np.errstate(under="ignore"):
        # Undo the tail's own debiasing, add the decayed carry-in, debias for n + k values.
        biased = tail[finite] * -np.expm1(k * ln_b)
        carry = last * -math.expm1(count * ln_b) * np.exp(k * ln_b)
        tail[finite] = (biased + carry) / -np.expm1((count + k) * ln_b)
    return tail


def _ema_loop(values: np.ndarray, beta: float) -> np.ndarray:
    out = np.empty_like(values)
    acc = 0.0
    weight = 1.0
    for i, v in enumerate(values.tolist()):
        acc = beta * acc + (1.0 - beta) * v
        weight *= beta
        out[i] = acc / (1.0 - weight)
    return out


class _Column:
    """float64 values that grow at the end in amortised O(new): the capacity doubles.

    ``view()`` is the filled part; views handed out earlier stay valid and unchanged,
    as appends only write past their end (or into a new buffer).
    """

    __slots__ = ("_buf", "size")

    def __init__(self, values: np.ndarray) -> None:
        self._buf = np.array(values, dtype=np.float64)  # a copy: never aliases the source
        self.size = int(self._buf.size)

    def view(self) -> np.ndarray:
        return self._buf[: self.size]

    def extend(self, new: np.ndarray) -> np.ndarray:
        need = self.size + int(new.size)
        if need > self._buf.size:
            grown = np.empty(max(need, 2 * self._buf.size, 1024), dtype=np.float64)
            grown[: self.size] = self._buf[: self.size]
            self._buf = grown
        self._buf[self.size : need] = new
        self.size = need
        return self.view()


def _columns(*arrays: np.ndarray) -> tuple[_Column, ...]:
    return tuple(_Column(a) for a in arrays)


def _views(columns: tuple[_Column, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, ys = (c.view() for c in columns)
    return x, y, ys


_EMPTY = np.empty(0)


@dataclass(slots=True)
class _Series:
    count: int = -1  # -1: never read
    columns: tuple[_Column, ...] = ()  # step, wall, value, as stored
    # For ``derived_key`` (x mode, beta, t0): x sorted ascending, raw y, smoothed y.
    derived_key: tuple[Any, ...] | None = None
    derived_columns: tuple[_Column, ...] = ()
    derived_count: int = 0  # source points ``derived`` covers
    in_order: bool = False  # ``derived`` kept arrival order (no sort): appends can extend it
    ema_state: tuple[float, int] = (math.nan, 0)  # last smoothed finite value, finite count
    frame_key: tuple[Any, ...] | None = None
    frame: CurveFrame | None = None

    def _stored(self, i: int) -> np.ndarray:
        return self.columns[i].view() if self.columns else _EMPTY

    @property
    def step(self) -> np.ndarray:
        return self._stored(0)

    @property
    def wall(self) -> np.ndarray:
        return self._stored(1)

    @property
    def value(self) -> np.ndarray:
        return self._stored(2)

    @property
    def derived(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if self.derived_key is None or not self.derived_columns:
            return None
        return _views(self.derived_columns)


class SeriesCache:
    """The points of the runs a panel shows; lives on (and is used from) the worker."""

    def __init__(self, source: PointSource) -> None:
        self._source = source
        self._series: dict[tuple[str, str], _Series] = {}
        self.infos: dict[str, list[Any]] = {}

    def refresh(self, run_ids: Iterable[str]) -> dict[str, list[Any]]:
        """Re-read series lists, and the points of series whose count changed.

        Stored points are only ever appended: a series that grew reads just its new
        points and extends what is cached (a live frame costs the new points, not the
        whole series). One that shrank (deleted and stored again) is read whole.
        """
        for run_id in run_ids:
            infos = list(self._source.series(run_id))
            self.infos[run_id] = infos
            for info in infos:
                key = (run_id, info.name)
                entry = self._series.setdefault(key, _Series())
                if entry.count == info.count:
                    continue
                if 0 < entry.count < info.count and entry.columns:
                    tail = self._source.points_since(run_id, info.name, entry.count)
                    for column, new in zip(entry.columns, (tail.step, tail.wall, tail.value),
                                           strict=True):
                        column.extend(_f64(new))
                else:
                    arrays = self._source.points(run_id, info.name)
                    entry.columns = _columns(arrays.step, arrays.wall, arrays.value)
                    entry.derived_key = None
                entry.count = int(entry.value.size)
        return self.infos

    def first_wall(self, run_id: str) -> float | None:
        walls = [s.wall[0] for (r, _n), s in self._series.items() if r == run_id and s.count]
        return float(min(walls)) if walls else None

    def arrays(self, run_id: str, series: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        entry = self._series.get((run_id, series))
        if entry is None:
            empty = np.empty(0)
            return empty, empty, empty
        return entry.step, entry.wall, entry.value

    def frames(self, traces: Sequence[tuple[str, str]], mode: XMode, beta: float,
               t0: dict[str, float], x_range: tuple[float, float] | None,
               pixels: int, smooth_pixels: int | None = None) -> list[CurveFrame]:
        """A frame per trace; an unchanged trace's is the same object as last time.

        ``smooth_pixels`` (default ``pixels``): columns of the smoothed line; fewer
        when many runs overlap, where drawing every line is what a frame costs.
        """
        smooth_pixels = pixels if smooth_pixels is None else smooth_pixels
        out = []
        for run_id, name in traces:
            entry = self._series.get((run_id, name))
            if entry is None or entry.count <= 0:
                continue
            x, y, ys = self._derived(entry, mode, beta, t0.get(run_id, 0.0))
            key = (entry.count, entry.derived_key, x_range, pixels, smooth_pixels)
            if entry.frame is not None and entry.frame_key == key:
                out.append(entry.frame)
                continue
            xr, yr = decimate(x, y, x_range, pixels)
            if beta > 0:
                # The smoothed line varies little within a pixel column: one point per
                # column draws the same line with half the points of a min/max envelope.
                xs, yss = sample_columns(x, ys, x_range, smooth_pixels)
            else:
                xs, yss = xr, yr
            plain = (all(bool(np.isfinite(a).all()) for a in (xr, yr, xs, yss))
                     and bool((yr > 0).all()) and bool((yss > 0).all()))
            entry.frame_key = key
            entry.frame = CurveFrame(run_id, name, np.asarray(xr), np.asarray(yr),
                                     np.asarray(xs), np.asarray(yss), entry.count, plain)
            out.append(entry.frame)
        return out

    def _derived(self, entry: _Series, mode: XMode, beta: float,
                 t0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (mode, round(beta, 4), t0 if mode is XMode.RELATIVE else 0.0)
        derived = entry.derived
        if entry.derived_key == key and derived is not None:
            if entry.derived_count == entry.count:
                return derived
            if _extend_derived(entry, mode, beta, t0):
                return _views(entry.derived_columns)
        x = x_values(entry.step, entry.wall, mode, t0)
        y = entry.value
        ys = ema_debiased(y, beta) if beta > 0 else y
        entry.ema_state = _ema_state(y, ys)
        bad = ~np.isfinite(x)
        if bad.any():  # decimation needs an x for every point
            x, y, ys = x[~bad], y[~bad], ys[~bad]
        entry.in_order = True
        if x.size > 1 and not np.all(np.diff(x) >= 0):
            # A restart from a checkpoint repeats steps: sort (stably) for decimation.
            order = np.argsort(x, kind="stable")
            x, y, ys = x[order], y[order], ys[order]
            entry.in_order = False
        entry.derived_columns = _columns(x, y, ys)
        entry.derived_key = key
        entry.derived_count = entry.count
        return _views(entry.derived_columns)


def _f64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _ema_state(y: np.ndarray, ys: np.ndarray) -> tuple[float, int]:
    finite = np.flatnonzero(np.isfinite(y))
    return (float(ys[finite[-1]]), int(finite.size)) if finite.size else (math.nan, 0)


def _extend_derived(entry: _Series, mode: XMode, beta: float, t0: float) -> bool:
    """Append the new points to ``entry.derived``; False if they need a full recompute."""
    derived = entry.derived
    if not entry.in_order or derived is None:
        return False
    start = entry.derived_count
    step_new = entry.step[start:]
    if mode is XMode.STEP and not np.isfinite(step_new).all():
        # A step missing in the new points is filled from the last known one before it.
        x_new = x_values(entry.step, entry.wall, mode, t0)[start:]
    else:
        x_new = x_values(step_new, entry.wall[start:], mode, t0)
    y_new = entry.value[start:]
    last, count = entry.ema_state
    ys_new = ema_continue(y_new, beta, last, count) if beta > 0 else y_new
    good = np.isfinite(x_new)
    x_new, y_new_kept, ys_new_kept = x_new[good], y_new[good], ys_new[good]
    x = derived[0]
    if x_new.size and ((x.size and x_new[0] < x[-1]) or np.any(np.diff(x_new) < 0)):
        return False  # out of order: sort everything again
    for column, new in zip(entry.derived_columns, (x_new, y_new_kept, ys_new_kept),
                           strict=True):
        column.extend(new)
    tail_last, tail_count = _ema_state(y_new, ys_new)
    if tail_count:
        entry.ema_state = (tail_last, count + tail_count)
    entry.derived_count = entry.count
    return True


def x_values(step: np.ndarray, wall: np.ndarray, mode: XMode, t0: float) -> np.ndarray:
    """The x of each point; steps missing from the source count up from the last known."""
    if mode is XMode.WALL:
        return wall
    if mode is XMode.RELATIVE:
        return wall - t0
    missing = ~np.isfinite(step)
    if not missing.any():
        return step
    if missing.all():
        return np.arange(step.size, dtype=np.float64)
    # Forward-fill the last known step (leading gaps take the first known one).
    idx = np.where(~missing, np.arange(step.size), 0)
    np.maximum.accumulate(idx, out=idx)
    filled = step[idx]
    first = int(np.argmax(~missing))
    filled[:first] = step[first]
    return filled


def series_order(name: str) -> tuple[int, str]:
    """Losses first, learning rates last, the rest by name in between."""
    low = name.lower()
    tail = low.rsplit("/", 1)[-1]
    if "loss" in low:
        return (0, low)
    if tail in ("lr", "learning_rate", "learning-rate") or tail.startswith("lr_"):
        return (2, low)
    return (1, low)
