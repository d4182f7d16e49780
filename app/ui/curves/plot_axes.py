"""Axis items, colours, the crosshair readout and the hovered-trace pick of the curve panels.

The axes draw their grid in opaque colours, each blended beforehand with the view's
background: Qt's raster engine blends a semi-transparent line pixel by pixel, which made
pyqtgraph's faint grid cost 12–16 ms of every repaint of a 1280 px plot (an opaque one
under 1 ms). An opaque grid must not cover the curves, so the panels put the axes below
the ViewBox (``GRID_Z``), where the grid lines show exactly as before.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPen

from app.ui.common.plain_text import html_text
from app.ui.curves.curve_data import CurveFrame, XMode
from app.ui.curves.series_table import format_value

# Distinct on white, and readable by most colour-blind viewers (Tableau 10 order).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
RAW_ALPHA = 60
GRID_Z = -200  # below the ViewBox (-100): grid lines under the curves


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


def blend(c: QColor, background: QColor) -> QColor:
    """The opaque colour ``c`` (with its alpha) shows as over ``background``."""
    a = c.alphaF()
    return QColor.fromRgbF(c.redF() * a + background.redF() * (1 - a),
                           c.greenF() * a + background.greenF() * (1 - a),
                           c.blueF() * a + background.blueF() * (1 - a))


class OpaqueGridMixin:
    """Tick and grid pens with alpha become opaque, pre-blended with the background."""

    def generateDrawSpecs(self, p: object) -> object:
        specs = super().generateDrawSpecs(p)  # type: ignore[misc]
        background = self._view_background()
        if specs is None or background is None:
            return specs
        axis_spec, tick_specs, text_specs = specs
        flat: dict[int, QPen] = {}
        ticks = []
        for pen, p1, p2 in tick_specs:
            c = pen.color()
            if c.alpha() < 255 and pen.style() == Qt.PenStyle.SolidLine:
                opaque = flat.get(c.rgba())
                if opaque is None:
                    opaque = flat[c.rgba()] = QPen(pen)
                    opaque.setColor(blend(c, background))
                pen = opaque
            ticks.append((pen, p1, p2))
        return axis_spec, ticks, text_specs

    def _view_background(self) -> QColor | None:
        scene = self.scene()  # type: ignore[attr-defined]
        views = scene.views() if scene is not None else []
        if not views:
            return None
        brush = views[0].backgroundBrush()
        return brush.color() if brush.style() == Qt.BrushStyle.SolidPattern else None


class ValueAxis(OpaqueGridMixin, pg.AxisItem):
    """The y axis (pyqtgraph's own, with the opaque grid)."""


class DateAxisItem(OpaqueGridMixin, pg.DateAxisItem):
    """Wall-clock x axis (pyqtgraph's, with the opaque grid)."""


class RelativeTimeAxis(OpaqueGridMixin, pg.AxisItem):
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


class StepAxis(OpaqueGridMixin, pg.AxisItem):
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


def left_axis() -> pg.AxisItem:
    return ValueAxis("left")


# (background, title, text, line) per theme; app/ui/shell/theme.py sets pyqtgraph's background
# to the first of these when it applies a theme.
_THEME_COLORS = {
    "light": ("#ffffff", "#202124", "#3c4043", "#9aa0a6"),
    "dark": ("#1e1f22", "#e8eaed", "#dadce0", "#80868b"),
}


def plot_colors() -> tuple[str, str, str, str]:
    """The colours for a new plot under the theme in force: dark once app/ui/theme applied
    the dark theme, light otherwise (pyqtgraph's own default background is black)."""
    dark = str(pg.getConfigOption("background")).lower() == _THEME_COLORS["dark"][0]
    return _THEME_COLORS["dark" if dark else "light"]


def new_plot(series: str, x_mode: str, log_y: bool, legend: bool) -> pg.PlotItem:
    """A plot styled for the theme in force, its axes (and grid) under its curves."""
    plot = pg.PlotItem(axisItems={"left": left_axis(), "bottom": bottom_axis(x_mode)})
    _bg, title, text, _line = plot_colors()
    plot.setTitle(html_text(series), bold=True, size="10pt", color=title)  # pyqtgraph: HTML
    plot.showGrid(x=True, y=True, alpha=0.18)
    plot.setLogMode(False, log_y)
    plot.hideButtons()
    plot.addLegend(offset=(-8, 8), labelTextColor=text).setVisible(legend)
    for name in ("left", "bottom"):
        _style_axis(plot.getAxis(name))
    return plot


def set_bottom_axis(plot: pg.PlotItem, x_mode: str) -> None:
    plot.setAxisItems({"bottom": bottom_axis(x_mode)})
    _style_axis(plot.getAxis("bottom"))


def _style_axis(axis: pg.AxisItem) -> None:
    _bg, _title, text, line = plot_colors()
    axis.setTextPen(text)
    axis.setPen(line)
    axis.setZValue(GRID_Z)  # its opaque grid goes under the curves


def bottom_axis(mode: str) -> pg.AxisItem:
    if mode == "wall":
        return DateAxisItem(orientation="bottom")
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


def nearest_trace(x: float, cursor_y: float, frames: Mapping[tuple[str, str], CurveFrame],
                  series: str, to_scene_y: Callable[[float, float], float], log_y: bool,
                  max_px: float) -> str | None:
    """Run id of the smoothed curve of ``series`` passing closest to the cursor, within
    ``max_px`` scene pixels: at view x ``x`` the cursor is at scene y ``cursor_y``, and
    ``to_scene_y(x, y)`` maps a view point's y (log10 of the value in log mode) there."""
    best, best_d = None, max_px
    for (run_id, name), frame in frames.items():
        xs = frame.x_smooth
        if name != series or xs.size == 0:
            continue
        i = int(np.clip(np.searchsorted(xs, x), 1, max(xs.size - 1, 1)))
        xs2, ys2 = xs[i - 1:i + 1], frame.y_smooth[i - 1:i + 1]
        if log_y:
            with np.errstate(divide="ignore", invalid="ignore"):
                ys2 = np.log10(ys2)
        if xs2.size == 0 or not np.all(np.isfinite(ys2)):
            continue
        y = float(np.interp(x, xs2, ys2))  # the curve's height under the cursor
        d = abs(to_scene_y(x, y) - cursor_y)
        if d < best_d:
            best, best_d = run_id, d
    return best
