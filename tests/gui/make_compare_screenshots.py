"""Render a comparison of 5 runs to PNGs, light and dark, for looking at the layout.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/gui/make_compare_screenshots.py [out_dir]

Writes compare-5-light.png and compare-5-dark.png (1280x800, default folder
artifacts/screenshots/). The runs live in a real store in a temporary LABDECK_HOME: a
learning-rate and batch-size sweep of one model plus one other model, four series each
(train loss, validation loss, validation accuracy, the lr schedule), one still running.
The dark one sets a dark QPalette on the application and pyqtgraph's colours to match.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import AppContext
from app.ui.compare.window import CompareWindow, open_compare_window
from app.ui.shell.app import create_application
from tests.harness.run_fixtures import add_points, key_of, open_store, start_run

# name, params, steps done, speed of learning, final loss
RUNS = (
    ("resnet50-lr1e-3", {"lr": 1e-3, "batch_size": 256, "seed": 0}, 10_000, 1.5, 0.30),
    ("resnet50-lr3e-4", {"lr": 3e-4, "batch_size": 256, "seed": 0}, 10_000, 1.0, 0.22),
    ("resnet50-lr1e-4", {"lr": 1e-4, "batch_size": 256, "seed": 0}, 10_000, 0.6, 0.27),
    ("resnet50-lr3e-4-bs512", {"lr": 3e-4, "batch_size": 512, "seed": 1}, 10_000, 0.8, 0.24),
    ("vit-s16-lr3e-4", {"lr": 3e-4, "batch_size": 256, "seed": 0, "model": "vit_s16"},
     6_200, 0.9, 0.20),
)
COMMON = {"model": "resnet50", "optimizer": "adamw", "epochs": 30, "weight_decay": 0.05,
          "data": "/datasets/imagenet-1k"}
TOTAL = 10_000


def curves(index: int, n: int, speed: float, floor: float, peak_lr: float) -> dict:
    rng = np.random.default_rng(11 + index)
    steps = np.arange(0, n, 10, dtype=np.int64)
    decay = np.exp(-steps * speed / (TOTAL / 4))
    loss = np.abs(2.4 * decay + floor + rng.normal(0, 0.06, steps.size) * (0.4 + decay))
    val_steps = steps[::25]
    val_loss = 2.5 * np.exp(-val_steps * speed / (TOTAL / 4)) + floor + 0.06
    acc = 0.78 - 0.7 * np.exp(-val_steps * speed / (TOTAL / 5)) - floor / 4
    warm = TOTAL // 20
    lr = np.where(steps < warm, peak_lr * steps / warm,
                  peak_lr / 2 * (1 + np.cos(math.pi * (steps - warm) / (TOTAL - warm))))
    return {"train/loss": (steps, loss), "val/loss": (val_steps, val_loss),
            "val/acc": (val_steps, acc), "lr": (steps, lr)}


def build(home: Path) -> tuple[AppContext, list[str]]:
    store = open_store(home)
    runstore, ms = RunStore(store), MetricStore(store)
    ids = []
    started = time.time() - 3 * 3600
    for index, (name, params, n, speed, floor) in enumerate(RUNS):
        run_id = start_run(runstore, name=name, params={**COMMON, **params},
                           started_at=started + 300 * index, gpus=(index % 4,))
        add_points(ms, key_of(runstore, run_id),
                   curves(index, n, speed, floor, float(params["lr"])),
                   wall0=started + 300 * index + 30, wall_step=0.9 + 0.1 * index)
        if n >= TOTAL:
            assert runstore.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED,
                                       ended_at=started + 300 * index + 9200, exit_code=0)
        ids.append(run_id)
    return AppContext(store, runstore, ms), ids


def dark_palette() -> QPalette:
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#1c1d20", QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#242529", QPalette.ColorRole.AlternateBase: "#2b2c31",
        QPalette.ColorRole.Text: "#e8eaed", QPalette.ColorRole.Button: "#33353a",
        QPalette.ColorRole.ButtonText: "#e8eaed", QPalette.ColorRole.Highlight: "#3b6fd8",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#2d2e31",
        QPalette.ColorRole.ToolTipText: "#e8eaed", QPalette.ColorRole.PlaceholderText: "#9aa0a6",
        QPalette.ColorRole.Mid: "#5f6368", QPalette.ColorRole.Dark: "#9aa0a6",
        QPalette.ColorRole.Light: "#3c4043", QPalette.ColorRole.Midlight: "#35363a",
        QPalette.ColorRole.Shadow: "#000000", QPalette.ColorRole.Link: "#8ab4f8",
    }
    for role, value in roles.items():
        pal.setColor(role, QColor(value))
    return pal


def wait(app: QApplication, window: CompareWindow, seconds: float = 0.8) -> None:
    end = time.monotonic() + seconds
    while (time.monotonic() < end or window.worker.is_busy()
           or not window.curves.settled()):
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > end + 15:
            raise RuntimeError("the compare window did not settle")


def shoot(app: QApplication, ctx: AppContext, ids: list[str], path: Path) -> None:
    window = open_compare_window(ids, ctx)
    try:
        window.resize(1280, 800)
        wait(app, window, 1.2)
        plots = window.curves.shown_plots()
        if len(plots) != 4 or len(window.curves.run_keys()) != 5:
            raise RuntimeError(f"expected 4 plots of 5 runs, got {plots}")
        # pyqtgraph sizes an axis to its tick labels while painting: paint once, let the
        # layout follow, then take the picture.
        window.grab()
        wait(app, window, 0.3)
        window.grab().save(str(path))
    finally:
        window.close()
        app.processEvents()


def render(out_dir: Path) -> list[Path]:
    app = create_application()
    app.setStyle("Fusion")
    home = Path(tempfile.mkdtemp(prefix="labdeck-shots-"))
    os.environ["LABDECK_HOME"] = str(home)
    ctx, ids = build(home)
    out_dir.mkdir(parents=True, exist_ok=True)
    light, dark = out_dir / "compare-5-light.png", out_dir / "compare-5-dark.png"
    original = app.palette()
    try:
        shoot(app, ctx, ids, light)
        app.setPalette(dark_palette())
        pg.setConfigOptions(background="#242529", foreground="#e8eaed")
        shoot(app, ctx, ids, dark)
    finally:
        app.setPalette(original)
        pg.setConfigOptions(background="k", foreground="d")
        ctx.store.close()
    return [light, dark]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("artifacts/screenshots")
    for p in render(target):
        print(p)
