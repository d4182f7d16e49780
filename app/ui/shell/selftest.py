"""``labdeck --self-test``: build the real window offscreen over two simulated hosts,
render it, and check that fonts exist and the picture is not blank."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop
from PySide6.QtGui import QFontDatabase

from app.core.hosts.cluster import ClusterMonitor
from app.ui.cluster.preview_sessions import preview_session_factory, preview_specs
from app.ui.shell.app import create_application, use_offscreen_if_headless
from app.ui.shell.main_window import MainWindow
from app.ui.shell.selfcheck import SIZE, render_checked
from app.ui.shell.selfcheck import fail as _fail

WAIT_S = 10.0


def run_self_test(screenshot: Path | None, *, demo: bool = False) -> int:
    """0 when the GUI stack works here; 1 with a reason on stderr otherwise.

    ``demo``: over the real demo lab (``app.ui.shell.demo_selftest``) instead of preview hosts.
    """
    use_offscreen_if_headless()
    app = create_application()
    if not QFontDatabase.families():
        return _fail("Qt finds no font. Install one (e.g. fonts-dejavu-core) or set "
                     "QT_QPA_FONTDIR.")
    if demo:
        from app.ui.shell.demo_selftest import run_demo_self_test

        return run_demo_self_test(app, screenshot)
    monitor = ClusterMonitor(preview_session_factory)
    window = MainWindow(monitor)
    try:
        monitor.set_hosts(preview_specs())
        monitor.start()
        window.resize(SIZE)
        window.show()
        expected = len(preview_specs())
        deadline = time.monotonic() + WAIT_S
        # Wait (processing events) until every preview host is online with a reading.
        while time.monotonic() < deadline:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            views = monitor.hosts()
            if len(views) == expected and all(v.sample is not None for v in views):
                break
            time.sleep(0.02)
        else:
            return _fail(f"the simulated hosts sent no reading within {WAIT_S:.0f} s")
        return render_checked(app, window, screenshot)
    finally:
        window.bridge.detach()
        window.cluster_view.stop()
        monitor.stop()
        window.hide()
        window.deleteLater()
        QCoreApplication.sendPostedEvents(None, 0)
