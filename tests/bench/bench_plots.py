"""Benchmarks of the curve panels (a script, not collected by pytest).

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_plots.py

1. A finished run with one 1M-point series: time from ``open_run_window`` to its curve
   painted (first frame handed to the curves, then the plots' paint).
2. 20 runs × 100k points in one panel, live: per frame, 100 new points arrive for every
   run ("20 live") or for one run while 19 are finished ("1 live"); the panel re-reads,
   smooths and decimates on its worker, then hands the frames to the curves.
3. Baseline, in the same process: plain pyqtgraph, ``setData`` of the full arrays of 20
   curves × 100k points in one plot of the same size, and the same paint.

How a frame is measured. A frame is what the GUI thread does for one display tick: the
panel's ``_apply`` (``setData`` on the curves, the table) and then the paint Qt does for
what changed. Nothing is forced: right after ``_apply`` returns, events are processed
until the plots' viewport has received its ``Paint`` event (an event filter counts
them) and once more, so the measured paint is exactly the region Qt repaints in a real
frame, into the window's backing store (offscreen: a QImage; no ``useOpenGL``). Not
``grab()``: it renders the whole window (controls, table, scroll area) a second time
into a new pixmap, work a real frame never does. "GUI part" = ``_apply`` + that paint;
"whole frame" = from the request (``notify_data`` + ``refresh_now``) to painted, so it
adds the worker's re-read, smoothing and decimation. Medians over 15 frames; the
machine is shared, so run it three times and compare within one run, with the baseline.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QWidget

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import RunContext
from app.ui.common.data_worker import DataWorker
from app.ui.curves.plots import CurvePanel
from app.ui.run_window.window import open_run_window
from app.ui.shell.app import create_application
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.run_fixtures import HOST, key_of, open_store, start_run

FRAMES = 15


class PaintCounter(QObject):
    """Counts the Paint events a widget receives (the paint runs right after the filter)."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def paint_done(app: QApplication, counter: PaintCounter, before: int,
               timeout: float = 10.0) -> None:
    """Process events until ``counter``'s widget has painted since ``before``."""
    end = time.monotonic() + timeout
    while counter.count == before:
        app.processEvents()
        if time.monotonic() > end:
            raise RuntimeError("no paint")
    app.processEvents()


def ingest(ms: MetricStore, key: str, name: str, start: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = (np.exp(-np.arange(start, start + n) / 3e5) + rng.normal(0, 0.05, n)).tolist()
    points = tuple(MetricPoint(name, start + i, 1.7e9 + (start + i) * 0.1, v)
                   for i, v in enumerate(values))
    offset = ms.offsets(key).get("metrics.jsonl", 0)
    ms.ingest([(HOST, TailChunk(key, "metrics.jsonl", 1, offset, offset + n, points=points))])


def spin_until(app: QApplication, done: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not done():
        app.processEvents()
        if time.monotonic() > end:
            raise RuntimeError("timed out")
        time.sleep(0.0005)


def bench_open(app: QApplication, home: Path) -> float:
    store = open_store(home)
    runstore, ms = RunStore(store), MetricStore(store)
    run_id = start_run(runstore, name="big")
    key = key_of(runstore, run_id)
    for k in range(10):
        ingest(ms, key, "loss", k * 100_000, 100_000, k)
    runstore.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED, exit_code=0,
                        ended_at=time.time())
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        window = open_run_window(run_id, RunContext(runstore, ms))
        window.resize(1280, 800)
        counter = PaintCounter(window.curves._layout.viewport())
        spin_until(app, lambda w=window: w.curves.frames_applied >= 1)
        paint_done(app, counter, 0)
        times.append(time.perf_counter() - t0)
        window.close()
        app.processEvents()
    store.close()
    return min(times)


def live_frames(app: QApplication, panel: CurvePanel, counter: PaintCounter,
                feed: Callable[[], None]) -> tuple[list[float], list[float], list[float]]:
    """(apply, GUI part, whole) per frame; ``feed`` stores the frame's new points."""
    apply_s: list[float] = []
    gui: list[float] = []
    whole: list[float] = []
    original = panel._apply

    def timed_apply(result: object) -> None:
        t = time.perf_counter()
        before = counter.count
        original(result)  # type: ignore[arg-type]
        apply_s.append(time.perf_counter() - t)
        paint_done(app, counter, before)
        gui.append(time.perf_counter() - t)

    panel._apply = timed_apply  # type: ignore[method-assign]
    for _frame in range(FRAMES):
        feed()
        count = len(gui)
        t0 = time.perf_counter()
        panel.notify_data()
        panel.refresh_now()
        spin_until(app, lambda c=count: len(gui) > c)
        whole.append(time.perf_counter() - t0)
    panel._apply = original  # type: ignore[method-assign]
    return apply_s, gui, whole


def bench_live(app: QApplication, home: Path, runs: int = 20,
               n: int = 100_000) -> dict[str, tuple[float, float, float]]:
    store = open_store(home)
    runstore, ms = RunStore(store), MetricStore(store)
    keys = []
    for r in range(runs):
        run_id = start_run(runstore, name=f"run{r}")
        runstore.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED)  # frees its GPUs
        key = key_of(runstore, run_id)
        ingest(ms, key, "loss", 0, n, r)
        keys.append(key)
    worker = DataWorker("labdeck-bench")
    panel = CurvePanel(worker, ms)
    panel.resize(1280, 700)
    panel.show()
    panel.set_runs([(k, f"run{i}") for i, k in enumerate(keys)])
    spin_until(app, panel.settled)
    counter = PaintCounter(panel._layout.viewport())
    steps = dict.fromkeys(keys, n)

    def feed(live: list[str]) -> Callable[[], None]:
        def add() -> None:
            for key in live:
                ingest(ms, key, "loss", steps[key], 100, keys.index(key))
                steps[key] += 100
        return add

    out = {}
    for name, live in (("1 live", keys[:1]), ("20 live", keys)):
        apply_s, gui, whole = live_frames(app, panel, counter, feed(live))
        out[name] = tuple(statistics.median(v) for v in (apply_s, gui, whole))
    panel.stop()
    worker.stop()
    store.close()
    return out  # type: ignore[return-value]


def bench_plain(app: QApplication, curves: int, n: int) -> float:
    widget = pg.PlotWidget()
    widget.resize(1280, 700)
    widget.show()
    counter = PaintCounter(widget.viewport())
    x = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(0)
    items = [widget.plot(pen=(i, curves)) for i in range(curves)]
    ys = [np.cumsum(rng.standard_normal(n)) for _ in range(curves)]
    app.processEvents()
    times = []
    for frame in range(5):
        t = time.perf_counter()
        before = counter.count
        for item, y in zip(items, ys, strict=True):
            item.setData(x, y + frame)
        paint_done(app, counter, before)
        times.append(time.perf_counter() - t)
    widget.close()
    return statistics.median(times)


def main() -> None:
    app = create_application()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["LABDECK_HOME"] = tmp
        opened = bench_open(app, home / "a")
        plain_1m = bench_plain(app, 1, 1_000_000)
        print(f"1M-point run: open to curve painted    {opened * 1000:7.0f} ms  (target < 500)")
        print(f"plain pyqtgraph setData 1M + paint     {plain_1m * 1000:7.0f} ms")
        live = bench_live(app, home / "b")
        plain_20 = bench_plain(app, 20, 100_000)
        for name, (apply_s, gui, whole) in live.items():
            print(f"20 x 100k, {name:7s}: GUI part/frame  {gui * 1000:7.1f} ms  "
                  f"(setData etc. {apply_s * 1000:.1f} + paint {(gui - apply_s) * 1000:.1f}; "
                  "target < 50)")
            print(f"20 x 100k, {name:7s}: whole frame     {whole * 1000:7.1f} ms  "
                  "(+ re-read, smooth, decimate on the worker)")
        print(f"plain pyqtgraph 20 x 100k setData + paint {plain_20 * 1000:7.1f} ms  "
              f"(plain / GUI part, 20 live = {plain_20 / live['20 live'][1]:.1f}x)")


if __name__ == "__main__":
    main()
