"""The in-app toast: a small frameless card at the window's bottom-right that fades away.

A child of the window (not a top-level popup), so it never steals focus, follows the
window when it moves and needs no window-manager support. Clicking it reports the event.
"""

from __future__ import annotations

from PySide6.QtCore import QEasingCurve, QEvent, QObject, QPropertyAnimation, Qt, QTimer, Signal
from PySide6.QtGui import QEnterEvent, QMouseEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsOpacityEffect,
    QVBoxLayout,
    QWidget,
)

from app.core.notify_events import NotifyEvent
from app.ui.common.plain_text import PlainLabel

SHOW_MS = 6000
FADE_MS = 600
MARGIN = 16
WIDTH = 340

# The accent on the left says the outcome at a glance.
ACCENTS = {"succeeded": "#2e7d32", "failed": "#c62828", "lost": "#b35c00",
           "cancelled": "#5f6368"}
DEFAULT_ACCENT = "#1e6fd9"

STYLE = """
QFrame#Toast {
    background: palette(base);
    border: 1px solid palette(mid);
    border-left: 5px solid %s;
    border-radius: 6px;
}
QFrame#Toast QLabel { color: palette(text); background: transparent; border: none; }
QLabel#toastTitle { font-weight: bold; }
"""


class Toast(QFrame):
    clicked = Signal(object)  # the NotifyEvent shown

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setObjectName("Toast")
        self.setStyleSheet(STYLE % DEFAULT_ACCENT)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.title = PlainLabel()
        self.title.setObjectName("toastTitle")
        self.title.setWordWrap(True)
        self.body = PlainLabel()
        self.body.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 12)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(self.body)
        self.event_shown: NotifyEvent | None = None
        self._opacity = QGraphicsOpacityEffect(self)
        self._opacity.setOpacity(1.0)
        self.setGraphicsEffect(self._opacity)
        self._fade = QPropertyAnimation(self._opacity, b"opacity", self)
        self._fade.setDuration(FADE_MS)
        self._fade.setStartValue(1.0)
        self._fade.setEndValue(0.0)
        self._fade.setEasingCurve(QEasingCurve.Type.InQuad)
        self._fade.finished.connect(self.hide)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SHOW_MS)
        self._timer.timeout.connect(self._fade.start)
        window.installEventFilter(self)
        self.hide()

    def show_event(self, event: NotifyEvent) -> None:
        """Show ``event`` (replacing what is shown) and restart the fade clock."""
        self.event_shown = event
        self.title.setText(event.title)
        self.body.setText(event.body)
        self.body.setVisible(bool(event.body))
        self.setStyleSheet(STYLE % ACCENTS.get(event.kind, DEFAULT_ACCENT))
        self._fade.stop()
        self._opacity.setOpacity(1.0)
        self._place()
        self.show()
        self.raise_()
        self._timer.start()

    def _place(self) -> None:
        parent = self.parentWidget()
        if parent is None:
            return
        # Over the central area (not over docks and their buttons) when there is one.
        central = getattr(parent, "centralWidget", None)
        area = parent.rect()
        if callable(central) and central() is not None and central().isVisible():
            area = central().geometry()
        self.setFixedWidth(min(WIDTH, max(200, area.width() - 2 * MARGIN)))
        self.adjustSize()
        self.move(area.right() - self.width() - MARGIN + 1,
                  area.bottom() - self.height() - MARGIN + 1)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize \
                and self.isVisible():
            self._place()
        return False

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.event_shown is not None:
            shown = self.event_shown
            self._timer.stop()
            self.hide()
            self.clicked.emit(shown)
        super().mouseReleaseEvent(event)

    def enterEvent(self, event: QEnterEvent) -> None:
        # Hovering keeps it: a toast must not vanish under the pointer about to click it.
        self._timer.stop()
        self._fade.stop()
        self._opacity.setOpacity(1.0)
        super().enterEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        if self.isVisible():
            self._timer.start()
        super().leaveEvent(event)
