"""Render the submit dialog as a dropped training script fills it, for looking at the layout.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/gui/make_submit_screenshot.py [out_dir]

Writes submit-dialog.png (900×700) and submit-dialog-sweep.png (a 2 × 3 sweep, pinned to a
GPU) to out_dir (default artifacts/screenshots/).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication
from submit_fixtures import make_world

from app.ui.submit.dialog import SubmitDialog, open_submit_dialog

SIZE = (900, 700)


def _wait(app: QApplication, done: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        app.processEvents()
        time.sleep(0.01)


def render(out_dir: Path) -> list[Path]:
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["LABDECK_HOME"] = home
        world = make_world(Path(home))
        world.window.resize(1280, 800)
        world.window.show()
        script = world.script()
        for name, pin, edits in (
            ("submit-dialog.png", None, {}),
            ("submit-dialog-sweep.png", ("gpu-b", (2,)),
             {"lr": "1e-3, 3e-4", "seed": "0, 1, 2"}),
        ):
            dialog: SubmitDialog = open_submit_dialog(
                world.window, world.ctx, None, paths=[script],
                pin_host=pin[0] if pin else None, pin_gpus=pin[1] if pin else ())
            _wait(app, lambda d=dialog: bool(d.items))
            for param, text in edits.items():
                dialog.params.set_value(param, text)
            dialog.revalidate()
            if edits:
                dialog.tabs.setCurrentIndex(0)
            dialog.resize(*SIZE)
            app.processEvents()
            path = out_dir / name
            dialog.grab().save(str(path))
            written.append(path)
            dialog.reject()
            app.processEvents()
        world.window.bridge.detach()
        world.window.cluster_view.stop()
        world.monitor.stop()
        world.window.close()
        world.store.close()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("artifacts/screenshots")
    for p in render(target):
        print(p)
