"""What every self-test checks of a rendered window (the preview lab's and the demo's):
the size, that something was painted, that GPU tiles exist, and the screenshot."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QFontDatabase, QImage
from PySide6.QtWidgets import QApplication

from app.ui.shell.main_window import MainWindow

SIZE = QSize(1280, 800)


def is_blank(image: QImage) -> bool:
    """True when every pixel has the same colour (nothing was drawn)."""
    img = image.convertToFormat(QImage.Format.Format_ARGB32)
    data = bytes(img.constBits())
    first = data[:4]
    return len(data) < 4 or data == first * (len(data) // 4)


def fail(message: str) -> int:
    print(f"labdeck self-test FAILED: {message}", file=sys.stderr)
    return 1


def render_checked(app: QApplication, window: MainWindow, screenshot: Path | None,
                   what: str = "") -> int:
    """Render ``window``, check the picture and save it to ``screenshot``; 0 or 1."""
    window.cluster_view.refresh()
    app.processEvents()
    image = window.grab().toImage()
    if image.isNull() or image.size() != SIZE * window.devicePixelRatioF():
        return fail(f"rendering gave an image of {image.width()}x{image.height()}, "
                     f"expected {SIZE.width()}x{SIZE.height()}")
    if is_blank(image):
        return fail("the rendered window is blank (one colour): widgets did not paint")
    tiles = len(window.cluster_view.tiles())
    if tiles == 0:
        return fail("no GPU tile was built for the simulated hosts")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        # The stubs want bytes for the format, the binding wants str.
        saved = image.save(str(screenshot), "PNG")  # type: ignore[call-overload]
        if not saved:
            return fail(f"could not write the screenshot to {screenshot}")
    print(f"labdeck self-test passed: {len(QFontDatabase.families())} font families, "
          f"{tiles} GPU tiles rendered at {SIZE.width()}x{SIZE.height()}" + what
          + (f", screenshot {screenshot}" if screenshot else ""))
    return 0
