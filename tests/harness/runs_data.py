"""A real store filled with realistic runs for the runs table's tests, benchmark and
screenshot: names, states, placements, params, tags and last metric values.

Rows go in with direct INSERTs in one transaction (100k runs in a few seconds); the
columns are the ones ``RunStore.submit``/``transition`` write, with the same encodings.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from app.core.jobs.jobspec import JobSpec
from app.core.queue.runs import RunState
from app.core.store import Store

HOSTS = ("gpu-a", "gpu-b", "gpu-c", "dgx-01", "dgx-02")
USERS = ("alice", "bob", "chen", "dana")
MODELS = ("resnet50", "vit-b16", "bert-base", "gpt2-small", "unet", "llama-7b-lora")
DATASETS = ("imagenet", "cifar100", "wikitext", "coco", "librispeech")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _state(rng: random.Random, age_rank: int) -> RunState:
    if age_rank < 6:
        return RunState.QUEUED
    if age_rank < 12:
        return rng.choice((RunState.RUNNING, RunState.RUNNING, RunState.LAUNCHING))
    return rng.choices(
        (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST),
        (70, 15, 10, 5))[0]


def fill_runs(store: Store, n: int, seed: int = 7, now: float | None = None,
              metrics: bool = True) -> list[str]:
    """Insert ``n`` runs (oldest first, one a minute apart ending at ``now``); returns ids
    newest first, the table's default order."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    rows, series = [], []
    for i in range(n):
        age_rank = n - 1 - i  # 0 = newest
        created = now - 60.0 * age_rank - 30.0
        run_id = "r" + _base36(int(created * 1000), 8) + _base36(i % 36**4, 4)
        model, data = rng.choice(MODELS), rng.choice(DATASETS)
        lr = rng.choice((1e-3, 3e-4, 1e-4, 3e-5))
        batch = rng.choice((32, 64, 128, 256))
        name = f"{model}-{data}-lr{lr:.0e}"
        state = _state(rng, age_rank)
        params = {"lr": lr, "batch": batch, "seed": rng.randrange(5)}
        tags = rng.sample(["baseline", "ablation", "sweep", "paper", "debug"], rng.randrange(3))
        spec = JobSpec(name=name, argv=("python3", "train.py", f"--lr={lr}"), params=params,
                       tags=tuple(tags), gpus=rng.choice((1, 1, 2, 4))).to_dict()
        host = gpus = started = ended = exit_code = None
        reason = ""
        if state is not RunState.QUEUED:
            host = rng.choice(HOSTS)
            count = spec["gpus"]
            first = rng.randrange(0, 8 - count + 1)
            gpus = list(range(first, first + count))
            started = min(created + rng.uniform(5, 600), now - 5.0)
        if state.finished:
            ended = min(now, started + rng.uniform(120, 6 * 3600)) if started else now
            exit_code = {RunState.SUCCEEDED: 0, RunState.FAILED: 1}.get(state)
            reason = {RunState.FAILED: "exited with code 1",
                      RunState.CANCELLED: "cancelled by the user",
                      RunState.LOST: "the host rebooted under the run"}.get(state, "")
        rows.append((run_id, name, json.dumps(spec), state.value, rng.choice(USERS), 0,
                     created, i + 1, 0, host, json.dumps(gpus or []),
                     json.dumps([f"GPU-{host}-{g}" for g in gpus or []]), started, ended,
                     exit_code, None, None, reason, json.dumps(tags), json.dumps(params), 0,
                     created, ended or started or created))
        if metrics and started is not None:
            progress = 1.0 if state.finished else rng.uniform(0.1, 0.9)
            loss = 0.15 + 2.3 * (1 - progress) ** 2 + rng.uniform(0, 0.05)
            acc = 0.95 - 0.8 * (1 - progress) ** 2 - rng.uniform(0, 0.03)
            steps = int(20000 * progress)
            series.append((run_id, "train/loss", steps, loss))
            series.append((run_id, "val/acc", steps, acc))
    with store.transaction() as db:
        db.conn.executemany(
            "INSERT INTO runs (id, name, spec, state, user, priority, created_at, seq, "
            "attempt, host, gpus, gpu_uuids, started_at, ended_at, exit_code, pid, boot_id, "
            "reason, tags, params, cancel_requested, queued_at, updated_at) "
            "VALUES (" + ", ".join("?" * 23) + ")", rows)
        db.conn.executemany(
            "INSERT INTO metric_series (run_id, name, count, first_step, last_step, "
            "last_value, min_value, max_value) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
            [(r, m, s + 1, s, v, v, v) for r, m, s, v in series])
    return [row[0] for row in reversed(rows)]


def open_filled(path: Path, n: int, seed: int = 7) -> tuple[Store, list[str]]:
    store = Store.open(path)
    return store, fill_runs(store, n, seed)
