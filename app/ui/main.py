"""Starts the GUI: the application, the trust prompter, the monitor, the window.

The composition is explicit so the entry point can wire the store in: it passes a
``monitor_factory`` that receives the GUI's ``TrustDecider`` (sessions need it to ask the
user about unknown host keys) and returns a monitor with the stored hosts, plus the
``HostActions`` that persist what the user adds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer

from app.core import paths
from app.core.cluster import ClusterMonitor, SessionFactory
from app.ui.app import create_application
from app.ui.bridge import ClusterBridge, TrustPrompter
from app.ui.crash_dialog import install_crash_handler
from app.ui.hostkey_dialog import KeyQuestion
from app.ui.main_window import HostActions, MainWindow
from ssh_backend.events import Session, SessionListener
from ssh_backend.hostspec import HostSpec

TrustDecider = Callable[[KeyQuestion], bool]
MonitorFactory = Callable[[TrustDecider], ClusterMonitor]


def ssh_session_factory(trust: TrustDecider) -> SessionFactory:
    """Sessions over SSH (or local), checking keys against Labdeck's known_hosts."""
    # paramiko is imported only when real sessions are wanted (not for the self-test).
    from ssh_backend.factory import open_session
    from ssh_backend.hostkeys import KnownHosts

    known_hosts = KnownHosts(paths.known_hosts_path(), paths.system_known_hosts())

    def factory(spec: HostSpec, listener: SessionListener) -> Session:
        session: Session = open_session(spec, listener, known_hosts=known_hosts, trust=trust)
        return session

    return factory


def default_monitor_factory(trust: TrustDecider) -> ClusterMonitor:
    """An empty monitor over real sessions; hosts come from the Add/Import actions."""
    return ClusterMonitor(ssh_session_factory(trust))


class _ExitAfterFirstPaint(QObject):
    """LABDECK_EXIT_AFTER_FIRST_PAINT=1 (tests/bench/bench_startup.py): print the wall
    time of the window's first paint on stderr, then close the window the normal way."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and isinstance(watched, MainWindow):
            watched.removeEventFilter(self)
            print(f"labdeck: first paint at {time.time():.6f}", file=sys.stderr, flush=True)
            QTimer.singleShot(0, watched.close)
        return False


def run_gui(argv: list[str], monitor_factory: MonitorFactory | None = None,
            actions: HostActions | None = None,
            on_window: Callable[[MainWindow], None] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit code.

    ``on_window`` lets the caller add pages or connect signals before the window shows.
    """
    app = create_application(argv)
    # An unexpected exception shows a copyable report instead of the window vanishing.
    crash_handler = install_crash_handler(app)
    # The window closes only after the monitor stopped; the loop ends when it says so.
    app.setQuitOnLastWindowClosed(False)
    prompter = TrustPrompter()
    monitor = (monitor_factory or default_monitor_factory)(prompter)
    bridge = ClusterBridge()
    monitor.add_listener(bridge)
    window = MainWindow(monitor, bridge, prompter, actions)
    window.closed.connect(app.quit)
    if on_window is not None:
        on_window(window)
    window.resize(1280, 800)
    if os.environ.get("LABDECK_EXIT_AFTER_FIRST_PAINT") == "1":
        window.installEventFilter(_ExitAfterFirstPaint(window))  # parented: kept alive
    window.show()
    # Sessions connect on their own threads; start them once the window can show prompts.
    threading.Thread(target=monitor.start, name="labdeck-start", daemon=True).start()
    code = app.exec()
    if not window.is_shutting_down():  # the loop was ended some other way (signal, quit)
        prompter.close()
        bridge.detach()
        monitor.stop()
    crash_handler.uninstall()
    return int(code)


def main() -> int:
    return run_gui(sys.argv)
