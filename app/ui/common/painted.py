"""Rounded frames and pill labels painted directly, without style sheets.

A style sheet on the cluster view styled every one of its thousands of child widgets
through QStyleSheetStyle, which keeps per-widget rule caches: with 32 hosts × 8 GPUs that
cost about 65 MiB. These paint the same look from the palette in a few lines each.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QFrame, QWidget

from app.ui.common.plain_text import PlainLabel


class RoundedFrame(QFrame):
    """A frame with a rounded 1 px border; the fill follows the palette (and enabled)."""

    def __init__(self, radius: float, fill: QPalette.ColorRole, border: QPalette.ColorRole,
                 disabled_fill: QPalette.ColorRole | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._radius = radius
        self._fill, self._border = fill, border
        self._disabled_fill = disabled_fill or fill

    def paintEvent(self, event: QPaintEvent) -> None:
        palette = self.palette()
        fill = self._fill if self.isEnabled() else self._disabled_fill
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(palette.color(self._border), 1))
        painter.setBrush(palette.color(fill))
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5),
                                self._radius, self._radius)
        painter.end()


class Pill(PlainLabel):
    """A label on a rounded pill: filled (white text) or outlined (text in the colour)."""

    def __init__(self, text: str = "", outline: bool = False, bold: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self._color = QColor("#5f6368")
        self._outline = outline
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setContentsMargins(8, 1, 8, 1)
        if bold:
            font = QFont(self.font())
            font.setBold(True)
            self.setFont(font)
        self._apply_text_color()

    def set_color(self, color: QColor | str) -> None:
        self._color = QColor(color)
        self._apply_text_color()
        self.update()

    def color(self) -> QColor:
        return QColor(self._color)

    def _apply_text_color(self) -> None:
        palette = self.palette()
        text = self._color if self._outline else QColor("white")
        palette.setColor(QPalette.ColorRole.WindowText, text)
        self.setPalette(palette)

    def paintEvent(self, event: QPaintEvent) -> None:
        color = self._color if self.isEnabled() else self.palette().color(QPalette.ColorRole.Mid)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = min(rect.height() / 2, 8.0)
        if self._outline:
            painter.setPen(QPen(color, 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
        else:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
        painter.drawRoundedRect(rect, radius, radius)
        painter.end()
        super().paintEvent(event)  # the text, on top
