"""The whole window on the real demo lab, time-compressed: local sessions with the real
agent and simulated GPUs, the other user's real process, real dispatcher, ingestor and
training runs. After the demo's first minute (compressed) there are finished runs; the
runs page opens one in a run window, and Enter on three opens their comparison."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt

from app.core.demo import prepare_demo
from app.core.lab import Lab
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.compare import window as compare_window
from app.ui.run_window import window as run_window
from app.ui.shell.features import install_features
from app.ui.shell.main_window import MainWindow
from tests.harness.kill_under import kill_under

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(150)]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"



@pytest.fixture
def demo(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "lab"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LABDECK_DEMO_SPEED", "10")
    store = Store.open()
    lab = prepare_demo(store)
    services = Lab.open(store)
    window = MainWindow(services.monitor)
    qtbot.addWidget(window)
    ctx = AppContext(store, RunStore(store), MetricStore(store), services)
    features = install_features(window, ctx)
    window.resize(1280, 800)
    window.show()
    services.start()
    try:
        yield window, ctx, features
    finally:
        features.close()
        window.bridge.detach()
        window.cluster_view.stop()
        for w in [*run_window._open.values(), *compare_window._open]:
            w.close()
        services.stop()
        lab.stop()
        store.close()
        kill_under(tmp_path)


def _finished(ctx: AppContext) -> list[str]:
    return [r.id for r in ctx.runstore.list_runs() if r.state is RunState.SUCCEEDED]


def test_demo_runs_finish_and_open_in_run_and_compare_windows(qtbot, demo) -> None:
    window, ctx, features = demo
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: len(_finished(ctx)) >= 3, timeout=90_000)
    finished_after = time.monotonic() - t0
    SHOTS.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SHOTS / "demo-cluster.png"))

    page = features.runs
    window.tabs.setCurrentWidget(page)
    model = page.model
    done = _finished(ctx)[:3]
    qtbot.waitUntil(lambda: all(model.row_of(r) is not None for r in done), timeout=10_000)
    window.grab().save(str(SHOTS / "demo-runs.png"))

    # One run: click, then double-click its row → its run window with curves.
    row = model.row_of(done[0])
    rect = page.view.visualRect(model.index(row, 0))
    qtbot.mouseClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: done[0] in run_window._open, timeout=5_000)
    win = run_window._open[done[0]]
    qtbot.waitUntil(lambda: len(win.curves.series_names()) >= 4, timeout=20_000)
    win.resize(1280, 800)
    qtbot.wait(500)
    win.grab().save(str(SHOTS / "demo-run-window.png"))

    # Three runs selected, Enter → a comparison of exactly those three.
    selection = QItemSelection()
    for run_id in done:
        r = model.row_of(run_id)
        selection.select(model.index(r, 0), model.index(r, model.columnCount() - 1))
    page.view.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    before = set(compare_window._open)
    with qtbot.waitSignal(page.open_runs_requested, timeout=5_000) as blocker:
        qtbot.keyClick(page.view, Qt.Key.Key_Return)
    assert sorted(blocker.args[0]) == sorted(done)
    new = compare_window._open - before
    assert len(new) == 1
    compare = new.pop()
    assert sorted(compare.run_ids()) == sorted(done)
    compare.resize(1280, 800)
    qtbot.waitUntil(lambda: compare.isVisible(), timeout=5_000)
    qtbot.wait(2_000)
    compare.grab().save(str(SHOTS / "demo-compare.png"))
    print(f"\n3 demo runs finished after {finished_after:.1f} s (speed 10)")
    win.close()
    compare.close()
