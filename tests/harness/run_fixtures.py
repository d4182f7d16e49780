"""A real store with runs, curves and console output, for the run window's tests."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.core.jobs.jobspec import JobSpec
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.protocol import MetricPoint, TailChunk

HOST = "gpu-a"
METRICS = "metrics.jsonl"
CONSOLE = "output.log"


def open_store(home: Path) -> Store:
    return Store.open(home / "labdeck.sqlite3")


def start_run(runstore: RunStore, name: str = "resnet50-lr3e-4",
              params: dict | None = None, started_at: float | None = None,
              gpus: Sequence[int] = (0, 1), user: str = "alice",
              tags: Sequence[str] = ()) -> str:
    """Submit a run and move it to RUNNING on HOST (as the dispatcher would)."""
    spec = JobSpec(name=name, argv=("python", "train.py"),
                   params=params if params is not None else {"lr": 0.0003, "batch": 256},
                   tags=tuple(tags))
    (run_id,) = runstore.submit([spec.to_dict()], user=user)
    uuids = [f"GPU-{HOST}-{g}" for g in gpus]
    assert runstore.claim(run_id, HOST, list(gpus), uuids)
    assert runstore.transition(run_id, RunState.LAUNCHING, RunState.RUNNING,
                               started_at=started_at or time.time(), pid=4242)
    return run_id


def key_of(runstore: RunStore, run_id: str) -> str:
    run = runstore.get(run_id)
    assert run is not None
    return run.host_run_id


def add_points(ms: MetricStore, key: str, series: dict[str, tuple[np.ndarray, np.ndarray]],
               wall0: float = 1.7e9, wall_step: float = 0.5) -> None:
    """Points of several series as one metrics.jsonl chunk (what the agent would send)."""
    points = []
    for name, (steps, values) in series.items():
        for s, v in zip(steps.tolist(), values.tolist(), strict=True):
            points.append(MetricPoint(name, int(s), wall0 + s * wall_step, float(v)))
    start = ms.offsets(key).get(METRICS, 0)
    end = start + 40 * len(points)
    result = ms.ingest([(HOST, TailChunk(key, METRICS, 1, start, end, points=tuple(points)))])
    assert not result.gaps


def add_log(ms: MetricStore, key: str, data: bytes) -> None:
    start = ms.offsets(key).get(CONSOLE, 0)
    chunk = TailChunk(key, CONSOLE, 2, start, start + len(data), data=data)
    result = ms.ingest([(HOST, chunk)])
    assert not result.gaps


def training_curves(n: int, start: int = 0, seed: int = 3) -> dict[str, tuple[np.ndarray,
                                                                              np.ndarray]]:
    """A noisy decaying loss, an accuracy and a warmup + cosine lr schedule."""
    rng = np.random.default_rng(seed + start)
    steps = np.arange(start, start + n, dtype=np.int64)
    total = max(n + start, 1000)
    loss = 2.5 * np.exp(-steps / (total / 4)) + 0.15 + rng.normal(0, 0.08, n) * np.exp(
        -steps / total)
    loss = np.abs(loss)
    acc = 1 - 0.9 * np.exp(-steps / (total / 5)) + rng.normal(0, 0.01, n)
    warm = total // 20
    lr = np.where(steps < warm, 3e-4 * steps / warm,
                  1.5e-4 * (1 + np.cos(math.pi * (steps - warm) / (total - warm))))
    return {"train/loss": (steps, loss), "val/acc": (steps, acc), "lr": (steps, lr)}


def console_lines(first: int, count: int, every: int = 10) -> bytes:
    lines = []
    for i in range(first, first + count):
        step = i * every
        lines.append(f"\x1b[32m[train]\x1b[0m epoch {step // 1000} | step {step} | "
                     f"loss: {2.5 * math.exp(-step / 2500) + 0.15:.4f} | lr 3.0e-04")
    return ("\n".join(lines) + "\n").encode()
