"""Axis items, colours and the crosshair readout shared by the curve panels."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor

from app.ui.curve_data import CurveFrame, XMode
from app.ui.series_table import format_value

# Distinct on white, and readable by most colour-blind viewers (Tableau 10 order).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
RAW_ALPHA = 60


def color(index: int) -> QColor:
    return QColor(PALETTE[index % len(PALETTE)])


def format_duration(seconds: float) -> str:
    """``1h 05m``, ``12m 30s``, ``45s``; negative durations get a minus sign."""
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s >= 86400:
        return f"{sign}{int(s // 86400)}d {int(s % 86400 // 3600):02d}h"
    if s >= 3600:
        return f"{sign}{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    if s >= 60:
        return f"{sign}{int(s // 60)}m {int(s % 60):02d}s"
    if s >= 1 or s == 0:
        return f"{sign}{s:.0f}s"
    return f"{sign}{s:.2g}s"


class RelativeTimeAxis(pg.AxisItem):
    """Seconds since the run started, labelled as durations on round time steps."""

    _STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
              21600, 43200, 86400, 172800, 604800)

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:
        span = maxVal - minVal
        if span <= 0 or span < 5:
            return super().tickValues(minVal, maxVal, size)
        target = max(2, int(size / 90))  # a label every ~90 px
        major = next((s for s in self._STEPS if span / s <= target), self._STEPS[-1])
        first = (minVal // major) * major
        ticks = [first + i * major for i in range(int(span / major) + 2)]
        return [(major, [t for t in ticks if minVal <= t <= maxVal])]

    def tickStrings(self, values: list, scale: float, spacing: float) -> list[str]:
        return [format_duration(v * scale) for v in values]


def format_count(value: float, magnitude: float | None = None) -> str:
    """Steps as people say them: 950, 12k, 1.25M (unit chosen by ``magnitude``)."""
    a = abs(value) if magnitude is None else abs(magnitude)
    if value == 0:
        return "0"
    if a >= 1e9:
        return f"{value / 1e9:.4g}G"
    if a >= 1e6:
        return f"{value / 1e6:.4g}M"
    if a >= 1e4:
        return f"{value / 1e3:.4g}k"
    return f"{value:.6g}"


class StepAxis(pg.AxisItem):
    """Step counts without pyqtgraph's "(x1e6)" unit prefix in the label."""

    def __init__(self, orientation: str = "bottom") -> None:
        super().__init__(orientation)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values: list, scale: float, spacing: float) -> list[str]:
        # One unit for the whole axis: "2k 4k … 10k", not "2000 4000 … 10k".
        top = max((abs(v * scale) for v in values), default=0.0)
        return [format_count(v * scale, top) for v in values]


def step_axis() -> pg.AxisItem:
    return StepAxis("bottom")


def bottom_axis(mode: str) -> pg.AxisItem:
    if mode == "wall":
        return pg.DateAxisItem(orientation="bottom")
    if mode == "relative":
        return RelativeTimeAxis("bottom")
    return step_axis()


def readout_text(x: float, mode: XMode, frames: Mapping[tuple[str, str], CurveFrame],
                 labels: Mapping[str, str]) -> str:
    """The crosshair's line: x, then the nearest smoothed value of every trace."""
    if mode is XMode.WALL:
        head = datetime.datetime.fromtimestamp(x).strftime("%Y-%m-%d %H:%M:%S")
    elif mode is XMode.RELATIVE:
        head = format_duration(x)
    else:
        head = f"step {format_count(round(x))}"
    parts = [head]
    several = len(labels) > 1
    for (run_id, series), frame in frames.items():
        xs = frame.x_smooth
        if xs.size == 0:
            continue
        i = int(np.clip(np.searchsorted(xs, x), 0, xs.size - 1))
        if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
            i -= 1
        name = f"{labels.get(run_id, run_id)}/{series}" if several else series
        parts.append(f"{name} {format_value(float(frame.y_smooth[i]))}")
    return " · ".join(parts)
