"""Benchmarks of the run window's curves (a script, not collected by pytest).

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_plots.py

1. A finished run with one 1M-point series: time from ``open_run_window`` to its curve
   drawn (first frame handed to the curves, then a full paint of the window).
2. 20 live runs × 100k points in one panel: per frame, new points arrive for every run,
   the panel re-reads, smooths and decimates on its worker, and redraws. Reported: the
   GUI thread's part (setData + paint) and the whole frame (request to painted).
3. Baseline: plain pyqtgraph ``setData`` of the full arrays (1M; 20 × 100k) and a paint.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gui"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication
from run_fixtures import HOST, key_of, open_store, start_run

from app.core.metricstore import MetricStore
from app.core.runs import RunState
from app.core.runstore import RunStore
from app.ui.app import create_application
from app.ui.data_worker import DataWorker
from app.ui.plots import CurvePanel
from app.ui.run_window import RunContext, open_run_window
from ssh_backend.protocol import MetricPoint, TailChunk


def ingest(ms: MetricStore, key: str, name: str, start: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = (np.exp(-np.arange(start, start + n) / 3e5) + rng.normal(0, 0.05, n)).tolist()
    points = tuple(MetricPoint(name, start + i, 1.7e9 + (start + i) * 0.1, v)
                   for i, v in enumerate(values))
    offset = ms.offsets(key).get("metrics.jsonl", 0)
    ms.ingest([(HOST, TailChunk(key, "metrics.jsonl", 1, offset, offset + n, points=points))])


def spin_until(app: QApplication, done, timeout: float = 60.0) -> None:
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
    t = time.perf_counter()
    for k in range(10):
        ingest(ms, key, "loss", k * 100_000, 100_000, k)
    print(f"setup: ingest 1M points {time.perf_counter() - t:.2f} s")
    runstore.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED, exit_code=0,
                        ended_at=time.time())
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        window = open_run_window(run_id, RunContext(runstore, ms))
        window.resize(1280, 800)
        spin_until(app, lambda w=window: w.curves.frames_applied >= 1)
        window.grab()  # a full paint with the curve
        times.append(time.perf_counter() - t0)
        window.close()
        app.processEvents()
    store.close()
    return min(times)


def bench_live(app: QApplication, home: Path, runs: int = 20,
               n: int = 100_000) -> tuple[float, float]:
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
    gui, whole = [], []
    original = panel._apply

    def timed_apply(result: object) -> None:
        t = time.perf_counter()
        original(result)  # type: ignore[arg-type]
        panel.grab()
        gui.append(time.perf_counter() - t)

    panel._apply = timed_apply  # type: ignore[method-assign]
    step = n
    for _frame in range(15):
        for r, key in enumerate(keys):
            ingest(ms, key, "loss", step, 100, r)
        step += 100
        count = len(gui)
        t0 = time.perf_counter()
        panel.notify_data()
        panel.refresh_now()
        spin_until(app, lambda c=count: len(gui) > c)
        whole.append(time.perf_counter() - t0)
    panel.stop()
    worker.stop()
    store.close()
    return statistics.median(gui), statistics.median(whole)


def bench_plain(app: QApplication, curves: int, n: int) -> float:
    widget = pg.PlotWidget()
    widget.resize(1280, 700)
    widget.show()
    x = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(0)
    items = [widget.plot(pen=(i, curves)) for i in range(curves)]
    ys = [np.cumsum(rng.standard_normal(n)) for _ in range(curves)]
    app.processEvents()
    times = []
    for frame in range(5):
        t = time.perf_counter()
        for item, y in zip(items, ys, strict=True):
            item.setData(x, y + frame)
        widget.grab()
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
        print(f"1M-point run: open to curve drawn   {opened * 1000:7.0f} ms  (target < 500)")
        print(f"plain pyqtgraph setData 1M + paint  {plain_1m * 1000:7.0f} ms  "
              f"(open/plain = {opened / plain_1m:.2f})")
        gui, whole = bench_live(app, home / "b")
        plain_20 = bench_plain(app, 20, 100_000)
        print(f"20 runs x 100k live: GUI part/frame {gui * 1000:7.1f} ms  (target < 50)")
        print(f"20 runs x 100k live: whole frame    {whole * 1000:7.1f} ms  "
              "(re-read + smooth + decimate on the worker, then draw)")
        print(f"plain pyqtgraph 20 x 100k setData   {plain_20 * 1000:7.1f} ms  "
              f"(plain/GUI part = {plain_20 / gui:.1f}x, plain/whole = {plain_20 / whole:.1f}x)")


if __name__ == "__main__":
    main()
