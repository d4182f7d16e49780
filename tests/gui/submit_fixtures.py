"""A lab for the drop-to-submit tests: a real store with two hosts, a main window over fake
sessions with recorded H100 readings, real scripts and job files, and synthetic drags."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from app.core.hosts.cluster import ClusterMonitor
from app.core.lab import Lab
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.shell.main_window import MainWindow
from tests.harness.gui_fakes import FakeLab, bring_online, busy_reading, idle_reading, spec

HOSTS = ("gpu-a", "gpu-b")
TRAIN_PY = textwrap.dedent('''\
    """Train a small model."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--amp", action="store_true", help="mixed precision")
    parser.add_argument("--seed", type=int, help="random seed")
    args = parser.parse_args()
    print("training with", args)
''')


@dataclass
class World:
    store: Store
    ctx: AppContext
    window: MainWindow
    monitor: ClusterMonitor
    lab: FakeLab
    files: Path
    wakes: list[int] = field(default_factory=list)

    def online(self) -> None:
        """Both hosts online with 4 H100s each (GPU 0 of gpu-a busy)."""
        for name in HOSTS:
            readings = [busy_reading(i, name) if (name, i) == ("gpu-a", 0)
                        else idle_reading(i, name) for i in range(4)]
            bring_online(self.lab, name, readings)

    def script(self, name: str = "train.py", text: str = TRAIN_PY) -> Path:
        path = self.files / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def make_world(home: Path) -> World:
    store = Store.open(home / "labdeck.sqlite3")
    for name in HOSTS:
        store.add_host(spec(name))
    lab = FakeLab()
    monitor = ClusterMonitor(lab)
    monitor.set_hosts(store.hosts())
    services = Lab(store, monitor)
    ctx = AppContext(store, RunStore(store), MetricStore(store), services)
    window = MainWindow(monitor)
    files = home / "work"
    files.mkdir()
    world = World(store, ctx, window, monitor, lab, files)
    # The dispatcher is not started here: count its wake-ups instead.
    services.dispatcher.wake = lambda: world.wakes.append(1)  # type: ignore[method-assign]
    return world


@dataclass
class Drag:
    """One synthetic drag: the mime data stays referenced as long as the drag lives."""

    mime: QMimeData
    target: QWidget
    pos: QPoint
    enter: QDragEnterEvent | None = None

    def start(self) -> bool:
        self.enter = QDragEnterEvent(self.pos, Qt.DropAction.CopyAction, self.mime,
                                     Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(self.target, self.enter)
        return self.enter.isAccepted()

    def move(self) -> bool:
        event = QDragMoveEvent(self.pos, Qt.DropAction.CopyAction, self.mime,
                               Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(self.target, event)
        return event.isAccepted()

    def drop(self) -> bool:
        event = QDropEvent(QPointF(self.pos), Qt.DropAction.CopyAction, self.mime,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(self.target, event)
        return event.isAccepted()


def drag(target: QWidget, paths: list[Path], pos: QPoint | None = None) -> Drag:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return Drag(mime, target, pos if pos is not None else target.rect().center())


def drop_files(target: QWidget, paths: list[Path], pos: QPoint | None = None) -> Drag:
    """Enter, move and drop, as a file manager's drag does; each step must be accepted."""
    d = drag(target, paths, pos)
    assert d.start(), "the drag was refused on entering"
    assert d.move()
    assert d.drop()
    return d
