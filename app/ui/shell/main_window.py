"""Labdeck's main window: tabs (the cluster first), host actions, a status-bar summary,
and an orderly shutdown that stops the monitor (or the app's whole Lab) off the GUI thread."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QTabWidget, QToolBar, QWidget

from app.core.events import HostChanged, HostRemoved, HostSample
from app.core.hosts import registry as hosts
from app.core.hosts.cluster import ClusterMonitor
from app.ui.cluster.add_host_dialog import AddHostDialog
from app.ui.cluster.cluster_view import ClusterView
from app.ui.cluster.hostkey_dialog import show_hostkey_changed
from app.ui.cluster.import_hosts_dialog import ImportHostsDialog
from app.ui.cluster.trust_prompter import TrustPrompter
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.common.plain_text import PlainLabel, display_text, plain_message_box
from app.ui.common.resources import app_icon
from ssh_backend.hostspec import HostSpec

SHUTDOWN_WAIT_S = 10.0


@dataclass(slots=True)
class HostActions:
    """What the window's host commands do; the app wires persistence in here.

    ``add_host`` and ``import_hosts`` run on a worker thread (they may write the store and
    start sessions); a ``ValueError`` they raise is shown to the user as it is.
    ``list_ssh_hosts`` runs on a worker thread when the import dialog opens; it is given
    the names and aliases already in use.
    """

    add_host: Callable[[HostSpec], None] | None = None
    import_hosts: Callable[[list[str]], None] | None = None
    list_ssh_hosts: Callable[[Collection[str]], list[hosts.ConfigHost]] | None = None


class MainWindow(QMainWindow):
    closed = Signal()  # after the shutdown has finished (or the wait ran out)
    action_failed = Signal(str)  # the message shown for a failed add/import

    def __init__(self, monitor: ClusterMonitor, bridge: EventBridge | None = None,
                 prompter: TrustPrompter | None = None, actions: HostActions | None = None,
                 parent: QWidget | None = None, *,
                 shutdown: Callable[[], None] | None = None) -> None:
        """``shutdown`` is what closing the window stops, on a thread of its own (the
        app's Lab, in its order); without it, the monitor. ``bridge``: the core's events
        for the window's features (default: one over ``monitor.bus``)."""
        super().__init__(parent)
        self.monitor = monitor
        self._shutdown = shutdown or monitor.stop
        self.bridge = bridge or EventBridge(monitor.bus, self,
                                            types=(HostChanged, HostSample, HostRemoved))
        # Host actions (store writes, session starts, reconnects): never on the GUI thread.
        self.action_worker = DataWorker("labdeck-action", self, idle_exit=True)
        self._action_serial = itertools.count()
        self.prompter = prompter or TrustPrompter()
        self.prompter.set_parent_widget(self)
        actions = actions or HostActions()
        self._add_host = actions.add_host or monitor.add_host
        self._import_hosts = actions.import_hosts or self._import_into_monitor
        self._list_ssh_hosts = actions.list_ssh_hosts or (
            lambda known: hosts.ssh_config_hosts(None, known)
        )
        self._shutdown_thread: threading.Thread | None = None
        self._shutdown_started = 0.0
        self._shutdown_done = False

        self.setWindowTitle("Labdeck")
        self.setWindowIcon(app_icon())
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.cluster_view = ClusterView(monitor, self.bridge)
        self.add_page(self.cluster_view, "Cluster")
        self.setCentralWidget(self.tabs)

        self.add_host_action = QAction("Add host…", self)
        self.add_host_action.setShortcut(QKeySequence("Ctrl+N"))
        self.add_host_action.triggered.connect(self.open_add_host)
        self.import_action = QAction("Import from ~/.ssh/config…", self)
        self.import_action.triggered.connect(self.open_import)
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        toolbar = QToolBar("Hosts")
        toolbar.setObjectName("hostsToolbar")
        toolbar.setMovable(False)
        toolbar.addAction(self.add_host_action)
        toolbar.addAction(self.import_action)
        self.addToolBar(toolbar)
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.add_host_action)
        file_menu.addAction(self.import_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("About Labdeck", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

        self.summary_label = PlainLabel()
        self.summary_label.setObjectName("summary")
        self.statusBar().addPermanentWidget(self.summary_label)
        self.cluster_view.summary_changed.connect(self.summary_label.setText)
        self.summary_label.setText(self.cluster_view.summary().text())
        self.cluster_view.trust_requested.connect(self._on_trust_requested)
        self.cluster_view.changed_key_help_requested.connect(self._on_changed_key_help)
        self.cluster_view.reconnect_requested.connect(self._reconnect)
        self.action_failed.connect(self._show_action_error)

    def add_page(self, widget: QWidget, title: str) -> int:
        """Room for later pages (Runs, …): each is a tab after the cluster."""
        return self.tabs.addTab(widget, title)

    # -- host actions ----------------------------------------------------------------
    def open_add_host(self) -> AddHostDialog:
        dialog = AddHostDialog(lambda: set(self.monitor.names()), self)
        dialog.accepted.connect(lambda: self._add_from(dialog))
        dialog.open()
        return dialog

    def _add_from(self, dialog: AddHostDialog) -> None:
        # Read the dialog here, on the GUI thread: the worker must not touch widgets.
        try:
            spec = dialog.spec()
        except ValueError as exc:  # the key file went away after the dialog checked it
            self.action_failed.emit(f"Could not add the host: {exc}")
            return
        self._run_action(lambda: self._add_host(spec), f"Could not add {spec.name}")

    def open_import(self) -> ImportHostsDialog:
        known = hosts.known_names(view.spec for view in self.monitor.hosts())
        list_hosts = self._list_ssh_hosts
        dialog = ImportHostsDialog(lambda: list_hosts(known), self)
        dialog.accepted.connect(lambda: self._import_from(dialog.selected_aliases()))
        dialog.open()
        return dialog

    def _import_from(self, aliases: list[str]) -> None:
        self._run_action(lambda: self._import_hosts(aliases), "Could not import hosts")

    def _import_into_monitor(self, aliases: list[str]) -> None:
        for alias in aliases:
            self.monitor.add_host(HostSpec(name=alias, ssh_alias=alias))

    def _run_action(self, fn: Callable[[], None], failure: str) -> None:
        self.statusBar().showMessage("Working…", 2000)
        # A key of its own: one action never replaces another that waits.
        self.action_worker.submit(f"action-{next(self._action_serial)}", fn, None,
                                  lambda exc: self.action_failed.emit(f"{failure}: {exc}"))

    def _show_action_error(self, message: str) -> None:
        # The message carries what a host or the network said: plain text, bounded.
        self.statusBar().showMessage(display_text(message), 10000)
        plain_message_box(QMessageBox.Icon.Warning, "Labdeck", message, self).open()

    def _reconnect(self, name: str) -> None:
        # reconnect_now() is meant to return at once, but it belongs to a session thread
        # that may hold locks: never risk the GUI thread on it.
        self.action_worker.submit(f"reconnect-{name}", lambda: self.monitor.reconnect(name))

    def _on_trust_requested(self, name: str) -> None:
        view = self.monitor.host(name)
        if view is None:
            return
        candidates = {name, view.spec.hostname, view.spec.ssh_alias,
                      view.hello.hostname if view.hello else None}
        question = self.prompter.declined_question({c for c in candidates if c})
        if question is None:
            # The session asks the prompter again while it reconnects: that shows the dialog.
            self._reconnect(name)
            return
        dialog = self.prompter.open_dialog(question)

        def trusted() -> None:
            self.prompter.approve(question)
            self._reconnect(name)

        dialog.accepted.connect(trusted)

    def _on_changed_key_help(self, name: str) -> None:
        view = self.monitor.host(name)
        if view is None:
            return
        spec = view.spec
        show_hostkey_changed(self, spec.hostname or spec.ssh_alias or name, spec.port or 22)

    def _about(self) -> None:
        QMessageBox.about(self, "About Labdeck",
                          "<b>Labdeck</b><br>A control deck for a lab's GPU workstations.")

    # -- shutdown --------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if self._shutdown_done:
            event.accept()
            return
        event.ignore()
        if self._shutdown_thread is not None:
            return
        # Refuse pending key questions and drop late events before sessions wind down.
        self.prompter.close()
        self.bridge.detach()
        self.cluster_view.stop()
        self.hide()
        self._shutdown_started = time.monotonic()
        self._shutdown_thread = threading.Thread(target=self._shutdown,
                                                 name="labdeck-shutdown", daemon=True)
        self._shutdown_thread.start()
        self._poll = QTimer(self)
        self._poll.setInterval(50)
        self._poll.timeout.connect(self._check_shutdown)
        self._poll.start()

    def is_shutting_down(self) -> bool:
        return self._shutdown_thread is not None

    def _check_shutdown(self) -> None:
        thread = self._shutdown_thread
        waited = time.monotonic() - self._shutdown_started
        if thread is not None and thread.is_alive() and waited < SHUTDOWN_WAIT_S:
            return
        self._poll.stop()
        self._shutdown_done = True
        self.closed.emit()
        self.close()
