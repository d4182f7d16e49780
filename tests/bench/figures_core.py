"""The suite's figures measured with the headless benchmark scripts' own code: the
scheduler (bench_scheduler), metric ingest (bench_ingest, against sqlite-utils) and the
tfevents reader (bench_tfevents, against TensorBoard's EventAccumulator).

Each ``measure_*(mode)`` returns figures for ``tests/bench/run.py``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import bench_scheduler
from tests.bench.benchlib import figure, median, pick


def measure_scheduler(mode: str) -> list[dict[str, Any]]:
    """One ``plan()`` over 10k queued runs on 64 hosts × 8 GPUs; the worst of the three
    labs of bench_scheduler (idle, 40 % busy, full), median of repeated calls."""
    from app.core.queue.scheduler import Policy, plan

    bench_scheduler.QUEUED = pick(mode, 500, 10_000, 10_000)
    repeat = pick(mode, 2, 9, 25)
    rng = random.Random(7)
    hosts_n = bench_scheduler.HOSTS
    tags = {f"gpu{h:02d}": [["a100"], ["h100"], ["h100", "nvlink"]][h % 3]
            for h in range(hosts_n)}
    runs = bench_scheduler.queue(rng)
    medians = {}
    for label, busy_share in [("idle", 0.0), ("40% busy", 0.4), ("full", 1.0)]:
        hosts, reserved = bench_scheduler.cluster(rng, busy_share)
        in_flight = {(h.name, 7) for h in hosts[:8]}
        active = {f"user{u}": u % 4 for u in range(20)}
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            plan(runs, hosts, reserved, in_flight, Policy(), host_tags=tags,
                 active_per_user=active, now=float(bench_scheduler.QUEUED))
            times.append(time.perf_counter() - started)
        medians[label] = median(times) * 1e3
    worst = max(medians, key=lambda k: medians[k])
    return [figure(
        "scheduler: one dispatch decision", medians[worst], "ms", target="< 20 ms",
        max_value=20,
        note=f"{bench_scheduler.QUEUED:,} queued, {hosts_n}×{bench_scheduler.GPUS} GPUs; "
             "worst lab shown; " + ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()),
    )]


def measure_ingest(mode: str) -> list[dict[str, Any]]:
    """Points/s into MetricStore (from TailChunks, as the ingestor sends them) against
    sqlite-utils ``insert_all`` of the same rows (run, series, step, wall, value)."""
    import sqlite_utils

    from app.core.metrics.metricstore import MetricStore
    from app.core.store import Store
    from tests.bench.bench_ingest import chunks_of

    n = pick(mode, 20_000, 500_000, 1_000_000)
    repeat = pick(mode, 1, 1, 3)
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-ingest-") as tmp:
        root = Path(tmp)
        ours, theirs = [], []
        with Store.open(root / "store.sqlite3") as store:
            ms = MetricStore(store)
            for k in range(repeat):
                chunks = chunks_of(f"run{k}", ["loss"], n, 20_000)
                started = time.perf_counter()
                ms.ingest(chunks)
                ours.append(time.perf_counter() - started)
            assert ms.series("run0")[0].count == n
        for k in range(repeat):
            rows = [{"run": f"run{k}", "series": p.series, "step": p.step, "wall": p.wall_time,
                     "value": p.value} for _, chunk in chunks_of(f"run{k}", ["loss"], n, 20_000)
                    for p in chunk.points]
            db = sqlite_utils.Database(root / f"plain{k}.db")
            db.enable_wal()
            started = time.perf_counter()
            db["points"].insert_all(rows, batch_size=10_000)
            theirs.append(time.perf_counter() - started)
            assert db["points"].count == n
            db.close()
    return [figure(
        "metric ingest", n / min(ours), "points/s", baseline=n / min(theirs),
        baseline_label="sqlite-utils insert_all", higher_is_better=True,
        target="≥ 500k points/s", min_value=500_000,
        note=f"{n:,} points, one series, best of {repeat}",
    )]


def measure_tfevents(mode: str) -> list[dict[str, Any]]:
    """CPU time to read every scalar of one event file: the agent's reader (checksums
    on) against EventAccumulator (bench_tfevents' two readers, same file)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.bench.bench_tfevents import ours, timed
    from tests.harness.tb_events import write_events

    count = pick(mode, 10_000, 200_000, 200_000)
    # TensorBoard's writer needs ~20 s for 200k points: keep the file for the next run.
    folder = Path(f"/tmp/labdeck-bench-tfevents-{count}")
    files = sorted(folder.glob("events.out.tfevents.*"))
    if len(files) != 1:
        for old in files:
            old.unlink()
        write_events(folder, count // 2, "simple", ("loss", "acc"))
        files = sorted(folder.glob("events.out.tfevents.*"))
    path = files[0]
    data = path.read_bytes()
    got, cpu_ours, _ = timed(ours, data)
    assert len(got) == count  # type: ignore[arg-type]

    def accumulate() -> int:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        return sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])

    total, cpu_tb, _ = timed(accumulate)
    assert total == count
    return [figure(
        "tfevents read", cpu_ours, "s CPU", baseline=cpu_tb,
        baseline_label="TensorBoard EventAccumulator", target="≥ 5× faster", min_ratio=5,
        note=f"{count:,} scalar points, {len(data) / 1e6:.1f} MB, CRC checked",
    )]
