"""The in-app notification list: every event with its time, newest first; clicking one
that names a run opens it. Lives in a dock the user toggles from the View menu."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.notify_events import NotifyEvent
from app.ui.common.plain_text import PlainLabel, display_text, tooltip_text

MAX_ITEMS = 500
EVENT_ROLE = Qt.ItemDataRole.UserRole + 1


class NotificationList(QWidget):
    open_requested = Signal(str)  # run id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("notificationList")
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(True)
        self.list.setUniformItemSizes(False)
        self.list.setSpacing(2)
        self.list.itemClicked.connect(self._on_item)
        self.empty = PlainLabel("No notifications yet. Finished runs and watched conditions "
                                "show up here.")
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: palette(mid); padding: 8px;")
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.empty)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._sync_empty()

    def add(self, event: NotifyEvent, shown_by: str) -> QListWidgetItem:
        """Record ``event`` at the top; ``shown_by`` is the channel ("" if only listed)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        item = QListWidgetItem(f"{stamp}  {display_text(event.title)}\n{display_text(event.body)}")
        item.setData(EVENT_ROLE, event)
        tip = event.text if shown_by else f"{event.text}\n(not shown as a popup)"
        item.setToolTip(tooltip_text(tip + ("\nClick to open the run." if event.run_id
                                            else "")))
        self.list.insertItem(0, item)
        while self.list.count() > MAX_ITEMS:
            self.list.takeItem(self.list.count() - 1)
        self._sync_empty()
        return item

    def events(self) -> list[NotifyEvent]:
        """Newest first."""
        return [self.list.item(i).data(EVENT_ROLE) for i in range(self.list.count())]

    def clear(self) -> None:
        self.list.clear()
        self._sync_empty()

    def _on_item(self, item: QListWidgetItem) -> None:
        event = item.data(EVENT_ROLE)
        if isinstance(event, NotifyEvent) and event.run_id:
            self.open_requested.emit(event.run_id)

    def _sync_empty(self) -> None:
        self.empty.setVisible(self.list.count() == 0)


class NotificationDock(QDockWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Notifications", parent)
        self.setObjectName("notificationsDock")
        self.view = NotificationList(self)
        self.setWidget(self.view)
        self.setAllowedAreas(Qt.DockWidgetArea.RightDockWidgetArea
                             | Qt.DockWidgetArea.LeftDockWidgetArea
                             | Qt.DockWidgetArea.BottomDockWidgetArea)
