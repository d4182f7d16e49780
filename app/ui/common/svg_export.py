"""SVG export of a pyqtgraph item that works with the pinned Qt.

Workaround for pyqtgraph issue #3485: with Qt 6.11, ``QSvgGenerator`` ends closed paths
with a separate ``Z`` token ("L0,0 Z"), and pyqtgraph 0.14's ``correctCoordinates``
splits every token of a path as ``x,y`` and fails on it. Before pyqtgraph rewrites a
group's paths, each ``Z`` is replaced with a line back to its subpath's start (the same
outline), so the exporter's own coordinate handling — which Qt's plain SVG rendering of
a scene gets wrong — still does the work. Remove this module once pyqtgraph parses ``Z``.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pyqtgraph as pg
import pyqtgraph.exporters

_lock = threading.Lock()


def close_paths_explicitly(d: str) -> str:
    """``M1,2 L3,4 Z`` → ``M1,2 L3,4 L1,2``; paths without ``Z`` come back unchanged."""
    out: list[str] = []
    start = ""
    for token in d.split():
        if token in ("Z", "z"):
            if start:
                out.append(f"L{start}")
            continue
        if token[:1] in ("M", "m"):
            start = token[1:]
        out.append(token)
    return " ".join(out)


def export_svg(item: Any, path: str | Path) -> None:
    """Write ``item`` (a ``GraphicsLayout``, ``PlotItem``…) as SVG to ``path``."""
    module: Any = sys.modules["pyqtgraph.exporters.SVGExporter"]
    original = module.correctCoordinates

    def tolerant(node: Any, defs: Any, item: Any, options: Any) -> Any:
        for element in node.getElementsByTagName("path"):
            d = element.getAttribute("d")
            if "Z" in d or "z" in d:
                element.setAttribute("d", close_paths_explicitly(d))
        return original(node, defs, item, options)

    with _lock:
        module.correctCoordinates = tolerant
        try:
            pg.exporters.SVGExporter(item).export(str(path))
        finally:
            module.correctCoordinates = original
