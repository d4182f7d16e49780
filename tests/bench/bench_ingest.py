"""Time the metric store: the two candidate layouts, then MetricStore end to end.

Run: ``.venv/bin/python tests/bench/bench_ingest.py``. Not a pytest module: timings on a
shared machine are for reading, not asserting. Targets: 1M points ingest < 2 s, one
1M-point series read < 0.2 s. Prints the best of ``REPEAT`` runs of each figure.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.metrics.metricstore import MetricStore
from app.core.store import Store
from ssh_backend.protocol import MetricPoint, TailChunk

N = 1_000_000
REPEAT = 3


def best(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def layouts(tmp: Path) -> None:
    steps = np.arange(N, dtype=np.int64)
    walls = 1.7e9 + steps * 0.01
    values = np.random.default_rng(0).standard_normal(N)
    rows = list(zip(steps.tolist(), walls.tolist(), values.tolist(), strict=True))

    def ingest_a() -> None:
        conn = connect(tmp / f"a{time.monotonic_ns()}.db")
        conn.execute("CREATE TABLE points (series_id INTEGER, seq INTEGER, step INTEGER, "
                     "wall REAL, value REAL, PRIMARY KEY (series_id, seq)) WITHOUT ROWID")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO points VALUES (1, ?, ?, ?, ?)",
                         ((i, *r) for i, r in enumerate(rows)))
        conn.execute("COMMIT")
        conn.close()

    ingest_a()
    a_path = sorted(tmp.glob("a*.db"))[-1]
    conn_a = connect(a_path)

    def read_a() -> None:
        got = conn_a.execute("SELECT step, wall, value FROM points WHERE series_id = 1 "
                             "ORDER BY seq").fetchall()
        arr = np.array(got, dtype=np.float64)
        assert len(arr) == N

    def ingest_b() -> None:
        conn = connect(tmp / f"b{time.monotonic_ns()}.db")
        conn.execute("CREATE TABLE c (series_id INTEGER, no INTEGER, n INTEGER, s BLOB, "
                     "w BLOB, v BLOB, PRIMARY KEY (series_id, no))")
        conn.execute("BEGIN IMMEDIATE")
        size = 65_536
        conn.executemany("INSERT INTO c VALUES (1, ?, ?, ?, ?, ?)", [
            (i, len(values[k:k + size]), steps[k:k + size].tobytes(),
             walls[k:k + size].tobytes(), values[k:k + size].tobytes())
            for i, k in enumerate(range(0, N, size))])
        conn.execute("COMMIT")
        conn.close()

    ingest_b()
    conn_b = connect(sorted(tmp.glob("b*.db"))[-1])

    def read_b() -> None:
        got = conn_b.execute("SELECT s, w, v FROM c WHERE series_id = 1 ORDER BY no").fetchall()
        v = np.concatenate([np.frombuffer(r[2]) for r in got])
        assert len(v) == N

    print(f"(a) points table, WITHOUT ROWID : ingest {best(ingest_a, 1):6.3f} s   "
          f"read {best(read_a):6.3f} s")
    print(f"(b) columnar chunks of 64k      : ingest {best(ingest_b):6.3f} s   "
          f"read {best(read_b):6.3f} s")


def chunks_of(run: str, series: list[str], per_series: int, per_chunk: int
              ) -> list[tuple[str, TailChunk]]:
    out: list[tuple[str, TailChunk]] = []
    for k in range(0, per_series, per_chunk):
        points = tuple(MetricPoint(name, j, 1.7e9 + j, j * 1e-3)
                       for j in range(k, min(k + per_chunk, per_series)) for name in series)
        out.append(("ws", TailChunk(run, "metrics.jsonl", 1, k, k + per_chunk, points=points)))
    return out


def metricstore(tmp: Path) -> None:
    runs = iter(range(1_000_000))
    with Store.open(tmp / "store.sqlite3") as store:
        ms = MetricStore(store)
        one = [chunks_of(f"one{i}", ["loss"], N, 20_000) for i in range(REPEAT)]
        ten = [chunks_of(f"ten{i}", [f"s{k}" for k in range(10)], N // 10, 2_000)
               for i in range(REPEAT)]
        t_one = best(lambda: ms.ingest(one[next(runs) % REPEAT]))
        runs = iter(range(1_000_000))
        t_ten = best(lambda: ms.ingest(ten[next(runs) % REPEAT]))
        t_read = best(lambda: ms.points("one0", "loss"))
        t_series = best(lambda: ms.series("one0"))
        assert ms.series("one0")[0].count == N

        # Live shape: 20 runs × 5 series, one small ingest every 100 ms of training.
        live = []
        for step in range(300):
            batch = []
            for r in range(20):
                points = tuple(MetricPoint(f"m{s}", step, float(step), 0.1) for s in range(5))
                batch.append(("ws", TailChunk(f"live{r}", "metrics.jsonl", 1, step * 10,
                                              step * 10 + 10, points=points)))
                data = b"x" * 199 + b"\n"
                batch.append(("ws", TailChunk(f"live{r}", "output.log", 2, step * 200,
                                              step * 200 + 200, data=data)))
            live.append(batch)
        t = time.perf_counter()
        for batch in live:
            ms.ingest(batch)
        t_live = (time.perf_counter() - t) / len(live)

        big = os.urandom(256 * 1024)
        log_chunks = [("ws", TailChunk("log", "output.log", 3, k * len(big), (k + 1) * len(big),
                                       data=big)) for k in range(400)]
        t = time.perf_counter()
        for k in range(0, 400, 8):
            ms.ingest(log_chunks[k:k + 8])
        t_log = time.perf_counter() - t
        size = ms.log_size("log")
        t_page = best(lambda: ms.log_bytes("log", size // 2, size // 2 + 1024 * 1024))
        t_tail = best(lambda: ms.log_bytes("log", size - 64 * 1024))

    print(f"MetricStore.ingest 1M points, 1 series (from TailChunks) : {t_one:6.3f} s")
    print(f"MetricStore.ingest 1M points, 10 series × 100k          : {t_ten:6.3f} s")
    print(f"MetricStore.points 1M-point series                      : {t_read:6.3f} s")
    print(f"MetricStore.series (summary, no point read)              : {t_series * 1e3:6.2f} ms")
    print(f"live ingest, 20 runs × (5 points + 200 B), per batch    : {t_live * 1e3:6.2f} ms")
    print(f"console 100 MiB in 256 KiB chunks                        : {t_log:6.3f} s "
          f"({100 / t_log:.0f} MiB/s)")
    print(f"log_bytes 1 MiB page mid-log / 64 KiB tail               : {t_page * 1e3:6.2f} ms / "
          f"{t_tail * 1e3:.2f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        layouts(Path(tmp))
        metricstore(Path(tmp))


if __name__ == "__main__":
    main()
