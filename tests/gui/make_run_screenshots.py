"""Render the run window of a realistic run to PNGs, for looking at the layout.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/gui/make_run_screenshots.py [out_dir]

Writes run-window-curves.png, run-window-console.png, run-window-params.png and
run-window-gpu.png (1280x800, default folder artifacts/screenshots/). The run lives in a
real store in a temporary LABDECK_HOME: 4 series (a noisy loss, validation loss, accuracy
and a warmup + cosine lr schedule) and a console with colour codes and a progress bar;
its GPUs' history is fed through a real ClusterMonitor from fake sessions.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from PySide6.QtWidgets import QApplication

import app.core.hosts.cluster as cluster_mod
from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runstore import RunStore
from app.ui.common.context import RunContext
from app.ui.run_window.window import RunWindow, open_run_window
from app.ui.shell.app import create_application
from ssh_backend.protocol import GpuReading
from tests.harness.gui_fakes import TRAIN, FakeLab, bring_online, busy_reading, idle_reading, spec
from tests.harness.run_fixtures import (
    HOST,
    add_log,
    add_points,
    console_lines,
    key_of,
    open_store,
    start_run,
    training_curves,
)

TABS = ("curves", "console", "params", "gpu")
STEPS = 12_000
PARAMS = {"lr": 0.0003, "batch_size": 256, "epochs": 12, "model": "resnet50",
          "optimizer": "adamw", "weight_decay": 0.05, "warmup_steps": 600,
          "data": "/datasets/imagenet-1k"}


def _reading(index: int, t: int) -> GpuReading:
    base = busy_reading(index, HOST, TRAIN)
    util = 92.0 + 6.0 * np.sin(t / 7 + index) if t % 50 > 3 else 35.0
    return GpuReading(**{**{f: getattr(base, f) for f in base.__slots__},
                         "util_pct": float(util), "mem_used_mib": 61000.0 + 40 * (t % 30)})


def build(home: Path, started: float) -> tuple[RunContext, str, ClusterMonitor]:
    store = open_store(home)
    runstore, ms = RunStore(store), MetricStore(store)
    run_id = start_run(runstore, name="resnet50-imagenet-lr3e-4", params=PARAMS,
                       started_at=started)
    key = key_of(runstore, run_id)
    curves = training_curves(STEPS)
    steps, loss = curves["train/loss"]
    val_steps = steps[::200]
    curves["val/loss"] = (val_steps, loss[::200] * 1.08 + 0.04)
    add_points(ms, key, curves, wall0=started + 20, wall_step=0.2)
    ms.ingest([(HOST, _params_chunk(key))])
    log = (b"\x1b[1mLoading ImageNet-1k\x1b[0m: 1281167 train, 50000 val images\n"
           b"Using 2 GPUs: NVIDIA H100 80GB HBM3\n" + console_lines(0, 1200)
           + b"\x1b[33mWARNING\x1b[0m grad norm 41.2 clipped to 5.0\n"
           + console_lines(1200, 30) + b"eval:  12%|\xe2\x96\x88  | 6/50\reval:  64%|"
           b"\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88   | 32/50")
    add_log(ms, key, log)
    lab = FakeLab()
    monitor = ClusterMonitor(lab)
    monitor.add_host(spec(HOST))
    now = time.time()
    for t in range(120):  # ten minutes of samples, one per 5 s, stamped in the past
        stamp = now - 600 + 5 * t
        with mock.patch.object(cluster_mod, "time", mock.Mock(time=lambda s=stamp: s)):
            readings = [_reading(0, t), _reading(1, t), idle_reading(2, HOST),
                        idle_reading(3, HOST)]
            if t == 0:
                bring_online(lab, HOST, readings)
            else:
                lab.sessions[HOST].report_sample(readings)
    return RunContext(runstore, ms, monitor), run_id, monitor


def _params_chunk(key: str):
    from ssh_backend.protocol import TailChunk
    return TailChunk(key, "tb/events.out.tfevents.1", 3, 0, 10,
                     params={"lr": 0.0003, "seed": 17, "amp": True, "model/depth": 50})


def wait(app: QApplication, window: RunWindow, seconds: float = 0.6) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end or window.worker.is_busy():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > end + 10:
            raise RuntimeError("the run window did not settle")


def render(out_dir: Path) -> list[Path]:
    app = create_application()
    home = Path(tempfile.mkdtemp(prefix="labdeck-shots-"))
    started = time.time() - 2 * 3600 - 17 * 60
    context, run_id, monitor = build(home, started)
    written = []
    window = open_run_window(run_id, context)
    try:
        window.resize(1280, 800)
        wait(app, window, 1.0)
        if len(window.curves.series_names()) != 4:
            raise RuntimeError(f"expected 4 plots, got {window.curves.series_names()}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(TABS):
            window.tabs.setCurrentIndex(index)
            wait(app, window)
            path = out_dir / f"run-window-{name}.png"
            window.grab().save(str(path))
            written.append(path)
    finally:
        window.close()
        monitor.stop()
        QApplication.processEvents()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("artifacts/screenshots")
    for p in render(target):
        print(p)
