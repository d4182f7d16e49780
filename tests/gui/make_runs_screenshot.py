"""Render the Runs page of a main window with 30 runs in mixed states, for looking at it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/gui/make_runs_screenshot.py [out_dir]

Writes runs-page.png (1280×800; default folder artifacts/screenshots/), with the last
loss and accuracy and the learning rate shown as columns and three runs selected.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QEventLoop, QItemSelectionModel, QTimer
from PySide6.QtWidgets import QApplication

from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runstore import RunStore
from app.core.run_edits import RunEdits
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.runs.page import install_runs_page
from app.ui.shell.app import create_application
from app.ui.shell.main_window import MainWindow
from tests.harness.gui_fakes import FakeLab
from tests.harness.runs_data import fill_runs


def _spin_until(cond, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("the Runs page did not load")
        loop = QEventLoop()
        QTimer.singleShot(10, loop.quit)
        loop.exec()


def render(out_dir: Path) -> Path:
    create_application()
    home = Path(tempfile.mkdtemp(prefix="labdeck-runs-shot-"))
    store = Store.open(home / "labdeck.sqlite3")
    ids = fill_runs(store, 30, seed=3)
    RunEdits(store).set_note([ids[25]], "diverged at step 3k: lr too high for batch 256")
    RunEdits(store).set_note([ids[12]], "baseline for the paper, table 2")
    ctx = AppContext(store, RunStore(store), MetricStore(store))
    monitor = ClusterMonitor(FakeLab())
    window = MainWindow(monitor)
    page = install_runs_page(window, ctx, lambda ids: None, lambda spec: None)
    try:
        window.resize(1280, 800)
        window.tabs.setCurrentWidget(page)
        window.show()
        page.set_extra_columns(["train/loss", "val/acc"], ["lr", "batch"])
        _spin_until(lambda: page.model.rowCount() == 30 and all(
            page.model.index(r, 0).data() != "…" for r in range(30)))
        selection = page.view.selectionModel()
        for row in (7, 8, 10):
            selection.select(page.model.index(row, 0), QItemSelectionModel.SelectionFlag.Select
                             | QItemSelectionModel.SelectionFlag.Rows)
        QApplication.processEvents()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "runs-page.png"
        window.grab().save(str(path))
        return path
    finally:
        page.stop()
        monitor.stop()
        window.hide()
        window.deleteLater()
        QApplication.processEvents()
        store.close()


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("artifacts/screenshots")))
