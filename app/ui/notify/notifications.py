"""Notifications: a finished run (or a watched condition) becomes exactly one popup.

``install_notifications(window, ctx, open_run)`` listens to the Lab's ``RunChanged``
events (through its ``EventBridge``, on the GUI thread), reads the run on a worker
thread, and shows one notification through the first channel that delivers: the
tray, else a freedesktop desktop notification, else an in-app toast. Every event is also
kept in the Notifications dock. Clicking any of them calls ``open_run(run_id)``.
A ``Notification`` published on the bus is shown the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

from app.core.events import Notification, RunChanged
from app.core.notify_events import (
    FinishTracker,
    FreeGpuWatch,
    NotifyEvent,
    NotifySettings,
    StallWatch,
    finished_event,
    free_by_host,
    load_settings,
    read_finished,
    read_progress,
    save_settings,
)
from app.core.queue.runs import Run
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.notify.channels import Channel, DesktopChannel, ToastChannel, TrayChannel
from app.ui.notify.notification_list import NotificationDock
from app.ui.notify.notification_settings import NotificationSettingsDialog
from app.ui.notify.tray import LabTray, install_tray, show_window

if TYPE_CHECKING:  # the window is the shell's; only its type is named here
    from app.ui.shell.main_window import MainWindow

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 15.0


class Notifier(QObject):
    """See the module docstring. ``notified(event, channel)``: after each event was
    recorded; ``channel`` is the one that showed it, "" when it was only listed."""

    notified = Signal(object, str)
    settings_changed = Signal(object)

    def __init__(self, window: MainWindow, ctx: AppContext,
                 open_run: Callable[[str], None],
                 channels: Sequence[Channel] | None = None,
                 tray: LabTray | None = None,
                 is_focused: Callable[[], bool] | None = None,
                 worker: DataWorker | None = None) -> None:
        super().__init__(window)
        self._window = window
        self._ctx = ctx
        self._open_run = open_run
        self._worker = worker or DataWorker("labdeck-notify", self)
        self.tray = tray
        self._is_focused = is_focused or window.isActiveWindow
        self.settings = NotifySettings()
        self.settings_loaded = False
        self._settings_chosen = False  # set_settings ran: a late load must not undo it
        self._tracker = FinishTracker()
        self._free_watch = FreeGpuWatch()
        self._stall_watch = StallWatch()
        self._closed = False
        self.channels: list[Channel] = list(channels) if channels is not None else [
            TrayChannel(tray.icon if tray else None, self._on_clicked),
            DesktopChannel(self._on_clicked),
            ToastChannel(window, self._on_clicked),
        ]
        self.dock = NotificationDock(window)
        self.dock.view.open_requested.connect(self._open)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self._add_actions(window)

        self.bridge = EventBridge(ctx.bus, self, types=(RunChanged, Notification))
        self.bridge.run_changed.connect(self._on_run_changed)
        self.bridge.notification.connect(self._on_notification)
        self._watch_timer = QTimer(self)
        self._watch_timer.setInterval(int(WATCH_INTERVAL_S * 1000))
        self._watch_timer.timeout.connect(self.check_watches)
        store = ctx.store
        self._worker.submit("settings", lambda: load_settings(store), self._on_settings_read)
        window.closed.connect(self.close)

    # -- GUI thread -------------------------------------------------------------------
    def _on_run_changed(self, event: RunChanged) -> None:
        self._read_run(event.run_id)

    def _on_notification(self, event: Notification) -> None:
        self.publish(event.event)

    def _read_run(self, run_id: str) -> None:
        if self._closed:
            return
        if self.tray is not None:
            self.tray.schedule_refresh()
        runstore, metricstore = self._ctx.runstore, self._ctx.metricstore
        self._worker.submit(f"run:{run_id}",
                            lambda: read_finished(runstore, metricstore, run_id),
                            self._on_run_read)

    def run_finished(self, run: Run) -> None:
        """Notify about ``run`` (finished) once; its series are read on the worker."""
        self._read_run(run.id)

    def _on_run_read(self, result: object) -> None:
        if not isinstance(result, tuple):
            return  # deleted meanwhile
        run, series = result
        if self._tracker.is_new_finish(run):
            self.publish(finished_event(run, series))

    def publish(self, event: NotifyEvent) -> None:
        """Record ``event`` in the list and pop it up unless the settings say otherwise."""
        if self._closed:
            return
        popup = self.settings.wants(event.kind) and not (
            self.settings.quiet_when_focused and self._is_focused())
        if not popup:
            self.dock.view.add(event, "")
            self.notified.emit(event, "")
            return
        self._deliver(event, 0)

    def _deliver(self, event: NotifyEvent, start: int) -> None:
        for index in range(start, len(self.channels)):
            channel = self.channels[index]
            if not channel.available():
                continue

            def done(ok: bool, channel: Channel = channel, index: int = index) -> None:
                if ok:
                    self.dock.view.add(event, channel.name)
                    self.notified.emit(event, channel.name)
                else:
                    log.info("the %s channel could not show a notification", channel.name)
                    self._deliver(event, index + 1)

            channel.show(event, done)
            return
        self.dock.view.add(event, "")
        self.notified.emit(event, "")

    def _on_clicked(self, event: NotifyEvent) -> None:
        if event.run_id:
            self._open(event.run_id)
        else:
            show_window(self._window)

    def _open(self, run_id: str) -> None:
        show_window(self._window)
        self._open_run(run_id)

    # -- watched conditions -------------------------------------------------------------
    def check_watches(self) -> None:
        """Evaluate the watched conditions now (the timer does so every 15 s)."""
        settings = self.settings
        if settings.free_gpus <= 0 and settings.stall_minutes <= 0:
            return
        runstore, metricstore = self._ctx.runstore, self._ctx.metricstore
        monitor = self._ctx.monitor or self._window.monitor

        reserved = self._ctx.reserved_now()

        def read() -> tuple[dict[str, int], list]:
            lab = reserved if reserved is not None else dict.fromkeys(runstore.reserved(), "")
            free = free_by_host(monitor, lab) if settings.free_gpus else {}
            progress = (read_progress(runstore, metricstore, monitor, WATCH_INTERVAL_S)
                        if settings.stall_minutes else [])
            return free, progress

        self._worker.submit("watches", read, self._on_watches_read)

    def _on_watches_read(self, result: object) -> None:
        assert isinstance(result, tuple)
        free, progress = result
        settings = self.settings
        event = self._free_watch.check(free, settings.free_gpus)
        if event is not None:
            self.publish(event)
        if settings.stall_minutes > 0:
            for stalled in self._stall_watch.check(progress, settings.stall_minutes,
                                                   settings.stall_runs):
                self.publish(stalled)

    # -- settings ---------------------------------------------------------------------
    def _on_settings_read(self, settings: object) -> None:
        self.settings_loaded = True
        if not self._settings_chosen:
            self._apply_settings(settings)

    def _apply_settings(self, settings: object) -> None:
        if not isinstance(settings, NotifySettings):
            return
        self.settings = settings
        if settings.free_gpus > 0 or settings.stall_minutes > 0:
            self._watch_timer.start()
        else:
            self._watch_timer.stop()
        self.settings_changed.emit(settings)

    def set_settings(self, settings: NotifySettings) -> None:
        """Use ``settings`` now and store them (on the worker)."""
        self._settings_chosen = True
        self._apply_settings(settings)
        store = self._ctx.store
        self._worker.submit("save-settings", lambda: save_settings(store, settings))

    def open_settings(self) -> NotificationSettingsDialog:
        dialog = NotificationSettingsDialog(self.settings, self._window)
        dialog.accepted.connect(lambda: self.set_settings(dialog.settings()))
        dialog.open()
        return dialog

    def _add_actions(self, window: MainWindow) -> None:
        menu = view_menu(window)
        self.toggle_list_action = self.dock.toggleViewAction()
        self.toggle_list_action.setText("Notifications")
        self.toggle_list_action.setShortcut(QKeySequence("Ctrl+Shift+N"))
        menu.addAction(self.toggle_list_action)
        self.settings_action = QAction("Notification settings…", window)
        self.settings_action.triggered.connect(self.open_settings)
        menu.addAction(self.settings_action)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._watch_timer.stop()
        self.bridge.detach()
        for channel in self.channels:
            channel.close()
        if self.tray is not None:
            self.tray.close()
        self._worker.stop()


def view_menu(window: MainWindow) -> QMenu:
    """The window's View menu, made on first use (other features add to it too)."""
    for action in window.menuBar().actions():
        menu = action.menu()
        if isinstance(menu, QMenu) and action.text().replace("&", "") == "View":
            return menu
    help_action = next((a for a in window.menuBar().actions()
                        if a.text().replace("&", "") == "Help"), None)
    menu = QMenu("&View", window)
    if help_action is not None:
        window.menuBar().insertMenu(help_action, menu)
    else:
        window.menuBar().addMenu(menu)
    return menu


def install_notifications(window: MainWindow, ctx: AppContext,
                          open_run: Callable[[str], None]) -> Notifier:
    """Tray icon (where a system tray exists), notifications and their list, settings."""
    worker = DataWorker("labdeck-notify", window)
    tray = install_tray(window, ctx, worker) if QSystemTrayIcon.isSystemTrayAvailable() \
        else None
    notifier = Notifier(window, ctx, open_run, tray=tray, worker=worker)
    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(notifier.close)
    return notifier
