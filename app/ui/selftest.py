"""``labdeck --self-test``: build the real window offscreen over two simulated hosts,
render it, and check that fonts exist and the picture is not blank."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop, QSize
from PySide6.QtGui import QFontDatabase, QImage
from PySide6.QtWidgets import QApplication

from app.core.cluster import ClusterMonitor
from app.ui.app import create_application, use_offscreen_if_headless
from app.ui.main_window import MainWindow
from app.ui.preview_sessions import preview_session_factory, preview_specs

SIZE = QSize(1280, 800)
WAIT_S = 10.0


def is_blank(image: QImage) -> bool:
    """True when every pixel has the same colour (nothing was drawn)."""
    img = image.convertToFormat(QImage.Format.Format_ARGB32)
    data = bytes(img.constBits())
    first = data[:4]
    return len(data) < 4 or data == first * (len(data) // 4)


def _fail(message: str) -> int:
    print(f"labdeck self-test FAILED: {message}", file=sys.stderr)
    return 1


def run_self_test(screenshot: Path | None, *, demo: bool = False) -> int:
    """0 when the GUI stack works here; 1 with a reason on stderr otherwise.

    ``demo``: over the real demo lab (``app.ui.demo_selftest``) instead of preview hosts.
    """
    use_offscreen_if_headless()
    app = create_application()
    if not QFontDatabase.families():
        return _fail("Qt finds no font. Install one (e.g. fonts-dejavu-core) or set "
                     "QT_QPA_FONTDIR.")
    if demo:
        from app.ui.demo_selftest import run_demo_self_test

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


def render_checked(app: QApplication, window: MainWindow, screenshot: Path | None,
                   what: str = "") -> int:
    """Render ``window``, check the picture and save it to ``screenshot``; 0 or 1."""
    window.cluster_view.refresh()
    app.processEvents()
    image = window.grab().toImage()
    if image.isNull() or image.size() != SIZE * window.devicePixelRatioF():
        return _fail(f"rendering gave an image of {image.width()}x{image.height()}, "
                     f"expected {SIZE.width()}x{SIZE.height()}")
    if is_blank(image):
        return _fail("the rendered window is blank (one colour): widgets did not paint")
    tiles = len(window.cluster_view.tiles())
    if tiles == 0:
        return _fail("no GPU tile was built for the simulated hosts")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        # The stubs want bytes for the format, the binding wants str.
        saved = image.save(str(screenshot), "PNG")  # type: ignore[call-overload]
        if not saved:
            return _fail(f"could not write the screenshot to {screenshot}")
    print(f"labdeck self-test passed: {len(QFontDatabase.families())} font families, "
          f"{tiles} GPU tiles rendered at {SIZE.width()}x{SIZE.height()}" + what
          + (f", screenshot {screenshot}" if screenshot else ""))
    return 0
