"""The cluster page: every monitored host as a group of GPU tiles, in a scroll area.

Events from the bridge only mark hosts dirty; a display timer (4 Hz) repaints the dirty
ones, reading a consistent copy from the monitor. Nothing here waits or does I/O.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from app.core.cluster import ClusterMonitor, GpuHistory
from app.ui.bridge import ClusterBridge
from app.ui.host_group import HostGroup
from app.ui.sparkline import WINDOW_S

DISPLAY_INTERVAL_MS = 250

STYLE = """
QFrame#HostGroup {
    background: palette(window);
    border: 1px solid palette(mid);
    border-radius: 8px;
}
QFrame#GpuTile {
    background: palette(base);
    border: 1px solid palette(midlight);
    border-radius: 6px;
}
QFrame#GpuTile:disabled { background: palette(window); }
QLabel#chip { border-radius: 7px; padding: 0px 8px; color: white; font-weight: bold; }
QLabel#chip[free="true"] { background: #2e7d32; }
QLabel#chip[free="false"] { background: #b35c00; }
QLabel#chip:disabled { background: palette(mid); }
QLabel#simulatedBadge {
    border: 1px solid #7b1fa2; color: #7b1fa2; border-radius: 8px; padding: 0px 6px;
}
"""


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    hosts: int
    gpus: int
    free: int
    online: int

    def text(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}" + ("" if count == 1 else "s")

        return f"{n(self.hosts, 'host')} · {n(self.gpus, 'GPU')} · {self.free} free"


class ClusterView(QWidget):
    summary_changed = Signal(str)
    trust_requested = Signal(str)
    changed_key_help_requested = Signal(str)
    reconnect_requested = Signal(str)

    def __init__(self, monitor: ClusterMonitor, bridge: ClusterBridge,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ClusterView")
        self.setStyleSheet(STYLE)
        self._monitor = monitor
        self.groups: dict[str, HostGroup] = {}
        self._dirty: set[str] = set()
        self._last_summary = ""

        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._page = QWidget()
        self._page.setObjectName("clusterPage")
        self._list = QVBoxLayout(self._page)
        self._list.setContentsMargins(10, 10, 10, 10)
        self._list.setSpacing(12)
        self.empty_label = QLabel(
            "<h3>No hosts yet</h3><p>Use <b>Add host…</b> to monitor a workstation over "
            "SSH, or <b>Import from ~/.ssh/config…</b> to pick hosts you already use.</p>"
        )
        self.empty_label.setObjectName("emptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self._list.addWidget(self.empty_label)
        self._list.addStretch(1)
        self._scroll.setWidget(self._page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._scroll)

        bridge.host_changed.connect(self._mark_dirty)
        bridge.host_sample.connect(self._mark_dirty)
        bridge.host_removed.connect(self._on_host_removed)
        self._timer = QTimer(self)
        self._timer.setInterval(DISPLAY_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self._dirty.update(monitor.names())
        self.refresh()

    # -- public ----------------------------------------------------------------------
    def summary(self) -> ClusterSummary:
        gpus = free = online = 0
        for group in self.groups.values():
            total, n_free = group.gpu_counts()
            gpus += total
            free += n_free
            online += bool(group.view and group.view.state == "online")
        return ClusterSummary(hosts=len(self.groups), gpus=gpus, free=free, online=online)

    def tiles(self) -> list[object]:
        return [t for g in self.groups.values() for t in g.tiles.values()]

    def stop(self) -> None:
        self._timer.stop()

    def refresh(self) -> None:
        """Repaint the hosts that changed since the last tick (the display timer's slot)."""
        dirty, self._dirty = self._dirty, set()
        for name in dirty:
            view = self._monitor.host(name)
            if view is None:
                self._remove_group(name)
                continue
            group = self.groups.get(name)
            if group is None:
                group = self._add_group(name)
            group.update_view(view, functools.partial(self._history, name))
        now = time.time()
        for group in self.groups.values():
            group.refresh_age(now)
        self.empty_label.setVisible(not self.groups)
        summary = self.summary().text()
        if summary != self._last_summary:
            self._last_summary = summary
            self.summary_changed.emit(summary)

    def _history(self, name: str, index: int) -> GpuHistory:
        return self._monitor.history(name, index, WINDOW_S)

    # -- slots -----------------------------------------------------------------------
    def _mark_dirty(self, name: str) -> None:
        self._dirty.add(name)

    def _on_host_removed(self, name: str) -> None:
        self._dirty.discard(name)
        self._remove_group(name)
        self.refresh()

    def _add_group(self, name: str) -> HostGroup:
        group = HostGroup(name)
        group.trust_requested.connect(self.trust_requested)
        group.changed_key_help_requested.connect(self.changed_key_help_requested)
        group.reconnect_requested.connect(self.reconnect_requested)
        self.groups[name] = group
        # Hosts are listed in the order they were added (the monitor's order).
        order = [n for n in self._monitor.names() if n in self.groups]
        position = order.index(name) if name in order else len(self.groups) - 1
        self._list.insertWidget(1 + position, group)
        group.show()  # at once, not at the layout's next deferred pass
        return group

    def _remove_group(self, name: str) -> None:
        group = self.groups.pop(name, None)
        if group is not None:
            self._list.removeWidget(group)
            group.hide()
            group.deleteLater()
