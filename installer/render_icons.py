"""Renders Labdeck's SVG icon into the freedesktop hicolor PNG sizes under resources/icons/.

Run after changing an icon, then commit the PNGs:

    QT_QPA_PLATFORM=offscreen .venv/bin/python installer/render_icons.py

Sizes up to SMALL_MAX use ``labdeck-small.svg``, a simplified drawing with strokes thick
enough to survive 16 px; the larger ones use the detailed ``labdeck.svg``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Before Qt is imported: rendering needs no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
APP_ID = "org.labdeck.Labdeck"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
SMALL_MAX = 24


def png_path(size: int, icons: Path = ICONS) -> Path:
    return icons / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


def source_svg(size: int, icons: Path = ICONS) -> Path:
    return icons / ("labdeck-small.svg" if size <= SMALL_MAX else "labdeck.svg")


def render(svg: Path, size: int) -> QImage:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])
    for size in SIZES:
        target = png_path(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The stubs want bytes for the format, the binding wants str.
        if not render(source_svg(size), size).save(str(target), "PNG"):  # type: ignore[call-overload]
            raise SystemExit(f"render_icons: could not write {target}")
        print(f"{target.relative_to(ROOT)}")
    scalable = ICONS / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ICONS / "labdeck.svg", scalable)
    print(f"{scalable.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
