"""Run colours and plot themes for comparisons: distinct hues that read on light and dark.

The hues are Tableau 10 (the same order as ``plot_axes.PALETTE``: the first five are the
most distinct). Each colour is then moved in lightness until it stands out from the plot
background by a WCAG contrast ratio of at least ``MIN_CONTRAST`` (3:1, the bar for lines
and other non-text graphics), so olive and cyan no longer fade on white and brown does
not sink into a dark background. Past ten runs the hues repeat, alternately lighter and
darker and slightly turned, so run 11 is not mistaken for run 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.ui.curves.plot_axes import PALETTE

MIN_CONTRAST = 3.0
# On dark backgrounds saturated mid tones look dim next to light text: ask for more.
DARK_CONTRAST = 3.6
_LIGHTNESS_STEP = 0.015


@dataclass(frozen=True, slots=True)
class PlotTheme:
    background: QColor
    title: QColor
    text: QColor
    axis: QColor
    grid_alpha: float

    @property
    def dark(self) -> bool:
        return luminance(self.background) < 0.5


LIGHT = PlotTheme(QColor("#ffffff"), QColor("#202124"), QColor("#3c4043"), QColor("#9aa0a6"),
                  0.18)


def plot_theme(palette: QPalette | None = None) -> PlotTheme:
    """The light theme of the curve panels, or a dark one when the palette is dark."""
    pal = palette if palette is not None else QApplication.palette()
    base = pal.color(QPalette.ColorRole.Base)
    if luminance(base) >= 0.5:
        return LIGHT
    text = pal.color(QPalette.ColorRole.Text)
    axis = QColor(text)
    axis.setAlphaF(0.55)
    return PlotTheme(QColor(base), QColor(text), QColor(text).darker(115), axis, 0.22)


def _channel(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: QColor) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    return (0.2126 * _channel(color.redF()) + 0.7152 * _channel(color.greenF())
            + 0.0722 * _channel(color.blueF()))


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio, 1 (same) to 21 (black on white)."""
    la, lb = luminance(a), luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def _hsl(hue: float, sat: float, light: float) -> QColor:
    return QColor.fromHslF(max(hue, 0.0) % 1.0, min(max(sat, 0.0), 1.0),
                           min(max(light, 0.0), 1.0))


def with_contrast(color: QColor, background: QColor, ratio: float) -> QColor:
    """``color`` made darker (light background) or lighter (dark one) until it reaches
    ``ratio`` against ``background``; hue and saturation are kept."""
    step = -_LIGHTNESS_STEP if luminance(background) >= 0.5 else _LIGHTNESS_STEP
    c = QColor(color)
    hue, sat, light = c.hslHueF(), c.hslSaturationF(), c.lightnessF()
    while contrast(c, background) < ratio and 0.0 < light < 1.0:
        light += step
        c = _hsl(hue, sat, light)
    return c


def run_color(index: int, background: QColor) -> QColor:
    """The colour of the ``index``-th run of a comparison on ``background``."""
    base = QColor(PALETTE[index % len(PALETTE)])
    rnd = index // len(PALETTE)
    if rnd:
        # Round 1 lighter, round 2 darker, round 3 lighter still, …; hue turned a little.
        shift = 0.16 * ((rnd + 1) // 2) * (1 if rnd % 2 else -1)
        base = _hsl(base.hslHueF() + 0.035 * rnd, base.hslSaturationF(),
                    min(max(base.lightnessF() + shift, 0.18), 0.86))
    ratio = MIN_CONTRAST if luminance(background) >= 0.5 else DARK_CONTRAST
    return with_contrast(base, background, ratio)
