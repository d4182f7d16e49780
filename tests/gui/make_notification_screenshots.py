"""Render the main window with the Notifications dock open and a toast showing, light and
dark, for looking at the layout.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/gui/make_notification_screenshots.py

Writes notifications-light.png and notifications-dark.png (1280×800, default folder
artifacts/screenshots/). A real store and fake hosts; a run finishes through the
notifier's real path (dispatcher report → worker read → toast).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from app.core.notify_events import GPUS_FREE, RUN_STALLED, NotifyEvent, NotifySettings
from app.core.queue.runs import RunState
from app.ui.notify.notifications import install_notifications
from app.ui.shell.app import create_application
from app.ui.shell.theme import ThemeManager
from tests.harness.notify_fixtures import make_world

SIZE = (1280, 800)


def _spin(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _wait(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not settle")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def render(out_dir: Path) -> list[Path]:
    saved = {k: os.environ.get(k)
             for k in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "LABDECK_HOME")}
    try:
        return _render(out_dir)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _render(out_dir: Path) -> list[Path]:
    app = create_application([])
    for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):  # show the in-app toast
        os.environ.pop(name, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["LABDECK_HOME"] = home
        world = make_world(Path(home))
        theme = ThemeManager(app)
        notifier = install_notifications(world.window, world.ctx, lambda run_id: None)
        world.window.resize(*SIZE)
        world.window.show()
        _wait(lambda: notifier.settings_loaded
              and world.window.cluster_view.summary().free == 4)
        notifier.set_settings(NotifySettings(quiet_when_focused=False))
        now = time.time()
        notifier.publish(NotifyEvent(GPUS_FREE, "4 GPUs free on gpu-c",
                                     "watching for 2 free GPUs on any host", host="gpu-c",
                                     at=now - 3600))
        notifier.publish(NotifyEvent("failed", "llama-8b-lora failed",
                                     "on gpu-b:2,3 · 12 min 40 s · train/loss 1.874 · exit "
                                     "code 1 · CUDA out of memory", run_id="zzzz-0001",
                                     host="gpu-b", at=now - 1800))
        notifier.publish(NotifyEvent(RUN_STALLED, "vit-small-sweep-3 stalled",
                                     "no new output and 0% GPU for 20 min 00 s on gpu-a",
                                     run_id="zzzz-0002", host="gpu-a", at=now - 600))
        world.finish(RunState.SUCCEEDED, exit_code=0)
        world.dispatcher.fire(world.run_id)
        _wait(lambda: len(notifier.dock.view.events()) == 4)
        notifier.dock.show()
        for mode in ("light", "dark"):
            theme.set_mode(mode, save=False)
            notifier.channels[-1].show(notifier.dock.view.events()[0], lambda ok: None)
            _spin(150)
            path = out_dir / f"notifications-{mode}.png"
            world.window.grab().save(str(path))
            written.append(path)
        theme.set_mode("light", save=False)
        notifier.close()
        world.window.hide()
        world.monitor.stop()
        world.store.close()
        world.window.deleteLater()
    return written


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "artifacts" / "screenshots"
    for p in render(target):
        print(p)
    QApplication.instance().quit()
