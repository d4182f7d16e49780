"""Starts the GUI over a ``Lab``: the application, the trust prompter, the window with
its features, and the event loop.

The Lab is opened by the caller's ``open_lab`` because its sessions need the GUI's
``TrustDecider`` (to ask the user about unknown host keys), which exists only once the
application does. Closing the window stops the Lab, in the Lab's order, off the GUI thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

from app.core.lab import Lab
from app.ui.cluster.hostkey_dialog import KeyQuestion
from app.ui.cluster.trust_prompter import TrustPrompter
from app.ui.common.context import AppContext
from app.ui.shell.app import create_application
from app.ui.shell.crash_dialog import install_crash_handler
from app.ui.shell.features import Features, install_features
from app.ui.shell.main_window import HostActions, MainWindow

TrustDecider = Callable[[KeyQuestion], bool]
LabOpener = Callable[[TrustDecider], Lab]


class _ExitAfterFirstPaint(QObject):
    """LABDECK_EXIT_AFTER_FIRST_PAINT=1 (tests/bench/bench_startup.py): print the wall
    time of the window's first paint on stderr, then close the window the normal way."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and isinstance(watched, MainWindow):
            watched.removeEventFilter(self)
            print(f"labdeck: first paint at {time.time():.6f}", file=sys.stderr, flush=True)
            QTimer.singleShot(0, watched.close)
        return False


def open_lab_window(lab: Lab, prompter: TrustPrompter | None = None
                    ) -> tuple[MainWindow, Features]:
    """The main window over ``lab`` with every feature installed, not shown. Its host
    actions go through ``lab.hosts``; closing it stops the Lab (not started here)."""
    actions = HostActions(add_host=lab.hosts.add, import_hosts=lab.hosts.import_aliases)
    window = MainWindow(lab.monitor, prompter=prompter, actions=actions, shutdown=lab.stop)
    features = install_features(window, AppContext.of(lab))
    return window, features


def run_gui(argv: list[str], open_lab: LabOpener,
            on_window: Callable[[MainWindow, Features], None] | None = None) -> int:
    """Open the main window over the Lab ``open_lab`` gives, run the event loop, close
    the Lab; returns the exit code. ``on_window`` runs before the window shows."""
    app = create_application(argv)
    # An unexpected exception shows a copyable report instead of the window vanishing.
    crash_handler = install_crash_handler(app)
    # The window closes only after the Lab stopped; the loop ends when it says so.
    app.setQuitOnLastWindowClosed(False)
    prompter = TrustPrompter()
    try:
        with open_lab(prompter) as lab:
            return _show_and_run(app, lab, prompter, on_window)
    finally:
        crash_handler.uninstall()


def _show_and_run(app: QApplication, lab: Lab, prompter: TrustPrompter,
                  on_window: Callable[[MainWindow, Features], None] | None) -> int:
    window, features = open_lab_window(lab, prompter)
    window.closed.connect(app.quit)
    if on_window is not None:
        on_window(window, features)
    window.resize(1280, 800)
    if os.environ.get("LABDECK_EXIT_AFTER_FIRST_PAINT") == "1":
        window.installEventFilter(_ExitAfterFirstPaint(window))  # parented: kept alive
    window.show()
    # Sessions connect on their own threads; start them once the window can show prompts,
    # and never on the GUI thread (the queue lock, the store).
    threading.Thread(target=lab.start, name="labdeck-start", daemon=True).start()
    code = app.exec()
    if not window.is_shutting_down():  # the loop was ended some other way (signal, quit)
        prompter.close()
        window.bridge.detach()
        lab.stop()
    return int(code)
