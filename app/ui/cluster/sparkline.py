"""A tiny custom-painted line chart of one value over the last few minutes.

Values are binned by time into at most one point per bin as they arrive, so painting
costs the same whatever the sample rate: hundreds of tiles stay cheap.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

WINDOW_S = 300.0
_BINS = 150


class Sparkline(QWidget):
    """Percent values (0 to 100) over ``window_s``; ``None`` leaves a gap in the line."""

    def __init__(self, color: QColor, parent: QWidget | None = None,
                 window_s: float = WINDOW_S) -> None:
        super().__init__(parent)
        self._color = QColor(color)
        self._window_s = window_s
        self._bin_s = window_s / _BINS
        # (bin number, value) oldest first; the newest bin keeps its latest value.
        self._points: collections.deque[tuple[int, float | None]] = collections.deque(
            maxlen=_BINS + 1
        )
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(26)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, False)

    def sizeHint(self) -> QSize:
        return QSize(160, 28)

    def append(self, t: float, value: float | None) -> None:
        b = int(t // self._bin_s)
        if self._points and self._points[-1][0] == b:
            self._points[-1] = (b, value)
        elif not self._points or b > self._points[-1][0]:
            self._points.append((b, value))

    def extend(self, times: Iterable[float], values: Iterable[float | None]) -> None:
        for t, v in zip(times, values, strict=False):
            self.append(t, v)

    def clear(self) -> None:
        self._points.clear()

    def point_count(self) -> int:
        return len(self._points)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        pal = self.palette()
        group = QPalette.ColorGroup.Active if self.isEnabled() else QPalette.ColorGroup.Disabled
        painter.fillRect(rect, pal.color(group, QPalette.ColorRole.AlternateBase))
        painter.setPen(QPen(pal.color(group, QPalette.ColorRole.Mid), 1))
        painter.drawRect(rect)
        if not self._points:
            return
        color = QColor(self._color) if self.isEnabled() else pal.color(
            group, QPalette.ColorRole.Text
        )
        now_bin = max(int(time.time() // self._bin_s), self._points[-1][0])
        first_bin = now_bin - _BINS
        inner = rect.adjusted(1, 2, -1, -1)

        def xy(b: int, v: float) -> QPointF:
            x = inner.left() + inner.width() * (b - first_bin) / _BINS
            y = inner.bottom() - inner.height() * max(0.0, min(v, 100.0)) / 100.0
            return QPointF(x, y)

        # Runs of consecutive known values become one filled area and one line each.
        runs: list[list[QPointF]] = [[]]
        for b, v in self._points:
            if b < first_bin:
                continue
            if v is None:
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(xy(b, v))
        fill = QColor(color)
        fill.setAlpha(50)
        for run in runs:
            if not run:
                continue
            line = QPainterPath(run[0])
            for p in run[1:]:
                line.lineTo(p)
            area = QPainterPath(line)
            area.lineTo(run[-1].x(), inner.bottom())
            area.lineTo(run[0].x(), inner.bottom())
            area.closeSubpath()
            painter.fillPath(area, fill)
            painter.setPen(QPen(color, 1.5))
            if len(run) == 1:
                painter.drawPoint(run[0])
            else:
                painter.drawPath(line)
