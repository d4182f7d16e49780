"""The cluster page: every monitored host as a group of GPU tiles, in a scroll area.

Events from the bridge only mark hosts dirty; the first mark starts a short single-shot
timer, so a burst of samples is coalesced into one repaint that still follows the samples
closely. A repaint reads a consistent copy from the monitor and updates only the hosts in
the scroll area's viewport; the others keep the copy for the counts and are repainted
when they scroll into view. Nothing here waits or does I/O.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from app.core.events import HostChanged, HostRemoved, HostSample
from app.core.hosts.cluster import ClusterMonitor, GpuHistory, HostView
from app.core.queue.gpufree import Policy, gpu_busy_reason
from app.ui.cluster.host_group import HostGroup
from app.ui.cluster.sparkline import WINDOW_S
from app.ui.common.event_bridge import EventBridge
from app.ui.common.plain_text import rich_label
from ssh_backend.protocol import GpuReading

_POLICY = Policy()

# From the first change to its repaint: long enough to gather a burst of samples.
COALESCE_MS = 40
# Ages ("last data 23 s ago") are shown to the second.
AGE_INTERVAL_MS = 1000
# Hosts this close to the viewport count as visible, so a small scroll shows fresh data.
VIEWPORT_MARGIN_PX = 200



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

    def __init__(self, monitor: ClusterMonitor, bridge: EventBridge,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ClusterView")
        self._monitor = monitor
        self.groups: dict[str, HostGroup] = {}
        self._dirty: set[str] = set()
        # Hosts with changes kept back while off screen.
        self._deferred: set[str] = set()
        self._last_summary = ""
        # Reserved GPUs, (host, index) → sentence: the dispatcher's merged view of the
        # lab's reservations when the window has one.
        self._reserved: Callable[[], Mapping[tuple[str, int], str]] = dict

        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._page = QWidget()
        self._page.setObjectName("clusterPage")
        self._list = QVBoxLayout(self._page)
        self._list.setContentsMargins(10, 10, 10, 10)
        self._list.setSpacing(12)
        self.empty_label = rich_label(
            "<h3>No hosts yet</h3><p>Use <b>Add host…</b> to monitor a workstation over "
            "SSH, or <b>Import from ~/.ssh/config…</b> to pick hosts you already use.</p>"
        )
        self.empty_label.setObjectName("emptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self._list.addWidget(self.empty_label)
        self._list.addStretch(1)
        self._scroll.setWidget(self._page)
        self._scroll.verticalScrollBar().valueChanged.connect(self._on_viewport_moved)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._scroll)

        bridge.host_changed.connect(self._mark_dirty)
        bridge.host_sample.connect(self._mark_dirty)
        bridge.host_removed.connect(self._on_host_removed)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(COALESCE_MS)
        self._timer.timeout.connect(self.refresh)
        self._age_timer = QTimer(self)
        self._age_timer.setInterval(AGE_INTERVAL_MS)
        self._age_timer.timeout.connect(self._refresh_ages)
        self._age_timer.start()
        self._stopped = False
        self._dirty.update(monitor.names())
        self.refresh()

    # -- public ----------------------------------------------------------------------
    def set_reserved_source(self, source: Callable[[], Mapping[tuple[str, int], str]]
                            ) -> None:
        """Where tiles, counts and the status bar learn which GPUs the lab reserved."""
        self._reserved = source
        self._dirty.update(self.groups)

    def _busy_rule(self, view: HostView, reading: GpuReading) -> str | None:
        """Whether a GPU is free, by the scheduler's own rule (``gpufree``)."""
        return gpu_busy_reason(view, reading, self._reserved(), (), _POLICY)

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
        self._stopped = True
        self._timer.stop()
        self._age_timer.stop()

    def refresh(self) -> None:
        """Repaint the hosts that changed since the last repaint (the timer's slot)."""
        self._timer.stop()
        dirty, self._dirty = self._dirty, set()
        visible = self._visible_rect()
        for name in dirty:
            view = self._monitor.host(name)
            if view is None:
                self._deferred.discard(name)
                self._remove_group(name)
                continue
            group = self.groups.get(name)
            if group is None:
                group = self._add_group(name)
            elif (not group.geometry().intersects(visible)
                  and group.only_values_changed(view)):
                # Off screen and only new readings: no widget work until it shows.
                group.defer_view(view)
                self._deferred.add(name)
                continue
            self._deferred.discard(name)
            group.update_view(view, functools.partial(self._history, name), self._busy_rule)
        self._refresh_ages()
        self.empty_label.setVisible(not self.groups)
        summary = self.summary().text()
        if summary != self._last_summary:
            self._last_summary = summary
            self.summary_changed.emit(summary)

    def _visible_rect(self) -> QRect:
        """The part of the page on screen (page coordinates, with a margin); empty while
        the page is not shown, so that nothing off screen is repainted."""
        if not self.isVisible():
            return QRect()
        viewport = self._scroll.viewport()
        top = -self._page.y() - VIEWPORT_MARGIN_PX
        return QRect(0, top, max(viewport.width(), 1),
                     viewport.height() + 2 * VIEWPORT_MARGIN_PX)

    def _refresh_ages(self) -> None:
        now = time.time()
        for group in self.groups.values():
            group.refresh_age(now)

    def _schedule(self) -> None:
        if not self._stopped and not self._timer.isActive():
            self._timer.start()

    def _on_viewport_moved(self) -> None:
        if self._deferred:
            self._dirty |= self._deferred
            self._schedule()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._on_viewport_moved()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._on_viewport_moved()

    def _history(self, name: str, index: int) -> GpuHistory:
        return self._monitor.history(name, index, WINDOW_S)

    # -- slots -----------------------------------------------------------------------
    def _mark_dirty(self, event: HostChanged | HostSample) -> None:
        self._dirty.add(event.host)
        self._schedule()

    def _on_host_removed(self, event: HostRemoved) -> None:
        self._dirty.discard(event.host)
        self._remove_group(event.host)
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
