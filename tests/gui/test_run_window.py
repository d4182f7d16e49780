"""The run window over a real store: header, live curves and console, exports, GPU tab."""

from __future__ import annotations

import csv
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from make_run_screenshots import render
from PySide6.QtGui import QImage

from app.core.events import EventBus, PointsStored
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import RunContext
from app.ui.run_window.window import RunWindow, open_run_window
from app.ui.shell.selfcheck import is_blank
from tests.harness.run_fixtures import (
    add_log,
    add_points,
    console_lines,
    key_of,
    open_store,
    start_run,
    training_curves,
)

pytestmark = pytest.mark.gui


class Events:
    """Publishes the way the Ingestor does: on its own thread, after a commit."""

    def __init__(self) -> None:
        self.bus = EventBus()

    def fire(self, run_key: str, kinds: frozenset[str]) -> None:
        def work() -> None:
            for _ in range(50):  # a burst: must coalesce into few GUI deliveries
                self.bus.publish(PointsStored(run_key, kinds))
        thread = threading.Thread(target=work, name="labdeck-test-ingest")
        thread.start()
        thread.join()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = open_store(tmp_path)
    runstore, ms = RunStore(store), MetricStore(store)
    run_id = start_run(runstore, name="bert-base-lr1e-4", params={"lr": 0.0001, "epochs": 3})
    key = key_of(runstore, run_id)
    add_points(ms, key, training_curves(8000))
    add_log(ms, key, console_lines(0, 200))
    ms.ingest([("gpu-a", _params_chunk(key))])
    yield runstore, ms, run_id, key
    store.close()


def _params_chunk(key: str):
    from ssh_backend.protocol import TailChunk
    return TailChunk(key, "metrics.params", 5, 0, 1, params={"lr": 0.0002, "seed": 3})


@pytest.fixture
def window(qtbot, world):
    runstore, ms, run_id, _key = world
    events = Events()
    win = open_run_window(run_id, RunContext(runstore, ms, None, events.bus))
    win.resize(1280, 800)
    win.events = events  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: win.curves.settled() and bool(win.console.plain_text()),
                    timeout=10_000)
    yield win
    win.close()
    assert events.bus.subscribers() == 0  # closing unsubscribed the window


def test_header_tabs_and_curves(window: RunWindow, world) -> None:
    _runstore, ms, run_id, key = world
    assert window.windowTitle() == "bert-base-lr1e-4 — running"
    assert window.state_chip.text() == "running"
    assert window.place_label.text() == "gpu-a:0,1"
    assert window.user_label.text() == "user alice"
    assert "running for" in window.time_label.text()
    assert [window.tabs.tabText(i) for i in range(4)] == ["Curves", "Console", "Parameters",
                                                          "GPU"]
    assert open_run_window(run_id, window.context) is window  # raised, not a second one
    px = window.curves.pixels()
    for info in ms.series(key):
        _raw, smooth = window.curves.items(key, info.name)
        assert len(smooth.getData()[0]) <= 2 * px + 4
        assert window.curves.table.value_at(key, info.name, "Last") == info.last_value
    rows = {r[0]: r[1:] for r in window.params.rows()}
    assert rows["epochs"] == ("3", "job spec")
    assert rows["seed"] == ("3", "recorded by the run")
    assert rows["lr"] == ("0.0002", "recorded by the run (spec said 0.0001)")
    assert "step 1990 |" in window.console.plain_text()


def test_live_data_and_finish(qtbot, window: RunWindow, world) -> None:
    runstore, ms, run_id, key = world
    ids = {n: tuple(map(id, window.curves.items(key, n))) for n in window.curves.series_names()}
    applied = window.curves.frames_applied
    add_points(ms, key, training_curves(2000, start=8000))
    add_log(ms, key, console_lines(200, 20))
    window.events.fire(key, frozenset({"metrics", "log"}))
    qtbot.waitUntil(lambda: "step 2190 |" in window.console.plain_text(), timeout=5000)
    qtbot.waitUntil(lambda: window.curves.frame(key, "lr").x_smooth[-1] == 9999, timeout=5000)
    assert window.curves.frames_applied - applied <= 3  # 50 callbacks, coalesced
    for name, same in ids.items():
        assert tuple(map(id, window.curves.items(key, name))) == same
    assert window.console.following
    # The run finishes: the header follows the store.
    assert runstore.transition(run_id, RunState.RUNNING, RunState.FAILED, exit_code=3,
                               reason="exited with code 3", ended_at=window.run.started_at + 75)
    with qtbot.waitSignal(window.run_changed, timeout=5000):
        window.reload_run()
    assert window.state_chip.text() == "failed"
    assert window.exit_label.text() == "exit code 3 · exited with code 3"
    assert window.time_label.text().endswith("ran 1m 15s")
    # Data of other runs is ignored.
    qtbot.waitUntil(window.curves.settled, timeout=5000)  # the finish re-reads once
    before = window.curves.frames_applied
    window.events.fire("some-other-run", frozenset({"metrics"}))
    qtbot.wait(500)
    assert window.curves.frames_applied == before


def test_exports(qtbot, window: RunWindow, world, tmp_path: Path) -> None:
    _runstore, ms, _run_id, key = world
    messages: list[str] = []
    window.export("png", tmp_path / "plot.png", messages.append)
    window.export("svg", tmp_path / "plot.svg", messages.append)
    with qtbot.waitSignal(window.worker.returned, timeout=10_000):
        window.export("csv", tmp_path / "metrics.csv", messages.append)
    assert not is_blank(QImage(str(tmp_path / "plot.png")))
    assert ET.parse(tmp_path / "plot.svg").getroot().tag.endswith("svg")
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["series", "step", "wall_time", "value"]
    stored = sum(info.count for info in ms.series(key))
    assert len(rows) - 1 == stored == 3 * 8000
    loss = ms.points(key, "train/loss")
    got = [r for r in rows[1:] if r[0] == "train/loss"]
    assert [float(r[3]) for r in got] == loss.value.tolist()  # exact round trip
    assert [int(r[1]) for r in got] == loss.step.tolist()
    assert messages[-1] == f"Saved {stored:,} points to {tmp_path / 'metrics.csv'}"
    assert not list(tmp_path.glob(".*.part"))


def test_gpu_tab_and_screenshots(qtbot, tmp_path: Path) -> None:
    paths = render(tmp_path)
    assert [p.name for p in paths] == ["run-window-curves.png", "run-window-console.png",
                                       "run-window-params.png", "run-window-gpu.png"]
    for path in paths:
        image = QImage(str(path))
        assert (image.width(), image.height()) == (1280, 800) and not is_blank(image)


def test_gpu_history_of_the_run(qtbot) -> None:
    import tempfile
    import time

    from make_run_screenshots import build
    home = Path(tempfile.mkdtemp(prefix="labdeck-gpu-"))
    context, run_id, monitor = build(home, time.time() - 3600)
    win = RunWindow(run_id, context)
    try:
        win.tabs.setCurrentWidget(win.gpu)
        def drawn() -> bool:
            curve = win.gpu.curve("load", 1)
            return curve is not None and curve.getData()[0] is not None and len(
                curve.getData()[0]) > 50

        qtbot.waitUntil(drawn, timeout=10_000)
        assert "recorded while labdeck was open" in win.gpu.note.text().lower()
        assert win.gpu.curve("load", 2) is None  # only the run's GPUs (0 and 1)
        _t, mem = win.gpu.curve("memory", 0).getData()
        assert 70 < float(mem.max()) < 80  # ~61 GB of 80 GB
    finally:
        win.close()
        monitor.stop()
        context.runstore._store.close()
