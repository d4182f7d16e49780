"""The tray icon: free GPUs per host and running/queued counts in its tooltip and menu,
Show/Hide and Quit.

Refreshed from the window's host events and from run changes, at most every 2 s; the
counts (SQLite) are read on the worker thread, never on the GUI thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.core.hosts.cluster import ClusterMonitor
from app.core.notify_events import free_by_host
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import action_text, tooltip_text
from app.ui.common.resources import app_icon
from ssh_backend.states import HostState

if TYPE_CHECKING:  # the window is the shell's; only its type is named here
    from app.ui.shell.main_window import MainWindow

MIN_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class HostSummary:
    name: str
    free: int
    total: int
    online: bool


@dataclass(frozen=True, slots=True)
class TraySummary:
    hosts: tuple[HostSummary, ...]
    running: int
    queued: int

    def host_lines(self) -> list[str]:
        lines = []
        for h in self.hosts:
            if h.online:
                lines.append(f"{h.name}: {h.free}/{h.total} GPUs free")
            else:
                lines.append(f"{h.name}: offline")
        return lines or ["no hosts"]

    def runs_line(self) -> str:
        return f"{self.running} running · {self.queued} queued"

    def text(self) -> str:
        free = sum(h.free for h in self.hosts)
        return "\n".join([f"Labdeck — {free} GPUs free", *self.host_lines(), self.runs_line()])


class LabTray(QObject):
    summary_changed = Signal(object)  # TraySummary

    def __init__(self, window: MainWindow, ctx: AppContext, worker: DataWorker,
                 parent: QObject | None = None) -> None:
        super().__init__(parent or window)
        self._window = window
        self._ctx = ctx
        self._worker = worker
        self.summary: TraySummary | None = None
        self.icon = QSystemTrayIcon(app_icon(), self)
        self.icon.setToolTip("Labdeck")
        self.menu = QMenu()
        self._info_actions: list[QAction] = []
        self._first_fixed = QAction("", self.menu)
        self._first_fixed.setSeparator(True)
        self.menu.addAction(self._first_fixed)
        self.show_action = self.menu.addAction("Hide window", self.toggle_window)
        self.quit_action = self.menu.addAction("Quit Labdeck", self._window.close)
        self.menu.aboutToShow.connect(self._update_show_action)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        self._last_refresh = -1e9
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh_now)
        bridge = window.bridge
        bridge.host_sample.connect(self.schedule_refresh)
        bridge.host_changed.connect(self.schedule_refresh)
        bridge.host_removed.connect(self.schedule_refresh)
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.icon.show()
        self.schedule_refresh()

    # -- refreshing -----------------------------------------------------------------
    def schedule_refresh(self, *_args: object) -> None:
        """Refresh soon: now if the last one is 2 s old, else when it will be."""
        if self._timer.isActive():
            return
        wait = MIN_INTERVAL_S - (time.monotonic() - self._last_refresh)
        self._timer.start(max(0, int(wait * 1000)))

    def refresh_now(self) -> None:
        self._last_refresh = time.monotonic()
        runstore, monitor = self._ctx.runstore, self._ctx.monitor or self._window.monitor
        reserved = self._ctx.reserved_now()
        self._worker.submit("tray-summary", lambda: read_summary(runstore, monitor, reserved),
                            self._apply)

    def _apply(self, summary: object) -> None:
        assert isinstance(summary, TraySummary)
        self.summary = summary
        self.icon.setToolTip(tooltip_text(summary.text()))
        for action in self._info_actions:
            self.menu.removeAction(action)
            action.deleteLater()
        self._info_actions = []
        for line in [*summary.host_lines(), summary.runs_line()]:
            action = QAction(action_text(line), self.menu)
            action.setEnabled(False)
            self.menu.insertAction(self._first_fixed, action)
            self._info_actions.append(action)
        self.summary_changed.emit(summary)

    # -- window ---------------------------------------------------------------------
    def toggle_window(self) -> None:
        w = self._window
        if w.isVisible() and not w.isMinimized():
            w.hide()
        else:
            show_window(w)

    def _update_show_action(self) -> None:
        visible = self._window.isVisible() and not self._window.isMinimized()
        self.show_action.setText("Hide window" if visible else "Show window")

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggle_window()

    def close(self) -> None:
        self._timer.stop()
        self.icon.hide()


def show_window(window: MainWindow) -> None:
    """Bring the window back to the front, from the tray or a notification."""
    if window.isMinimized():
        window.showNormal()
    window.show()
    window.raise_()
    window.activateWindow()


def read_summary(runstore: RunStore, monitor: ClusterMonitor | None,
                 reserved: Mapping[tuple[str, int], str] | None = None) -> TraySummary:
    """Worker thread: free GPUs per host (by the scheduler's rule, with the lab's
    reservations when the dispatcher knows them) and run counts."""
    if reserved is None:
        reserved = dict.fromkeys(runstore.reserved(), "")
    hosts: list[HostSummary] = []
    if monitor is not None:
        free = free_by_host(monitor, reserved)
        for view in sorted(monitor.hosts(), key=lambda v: v.name):
            total = len(view.sample.gpus) if view.sample is not None else 0
            hosts.append(HostSummary(view.name, free.get(view.name, 0), total,
                                     view.state is HostState.ONLINE))
    running = runstore.count([RunState.RUNNING, RunState.LAUNCHING])
    queued = runstore.count([RunState.QUEUED])
    return TraySummary(tuple(hosts), running, queued)


def install_tray(window: MainWindow, ctx: AppContext, worker: DataWorker) -> LabTray:
    """The tray icon (shown only where a system tray exists) with its summary menu."""
    return LabTray(window, ctx, worker)
