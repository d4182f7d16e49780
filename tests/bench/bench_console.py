"""Time console capture on the app side: the splitter and the line parser, then a whole
console through ``MetricStore.ingest`` as the Ingestor calls it (256 KiB chunks, points
parsed from the bytes the store appends).

Run: ``.venv/bin/python tests/bench/bench_console.py [MB]`` (default 256; 1024 for the
issue's "1 GB log" check). Not a pytest module: timings on a shared machine are for
reading. Also prints the peak RSS, which must not grow with the size of the log.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.console.parse import ConsoleSplitter, parse_line
from app.core.metrics.metricstore import MetricStore
from app.core.store import Store
from ssh_backend.protocol import MetricPoint, TailChunk

CHUNK = 256 * 1024
KINDS = {
    "prose": b"2024-01-01 12:00:01,123 INFO trainer: saving checkpoint to /tmp/x.pt\n",
    "progress": b"Epoch 3:  45%|####5     | 450/1000 [00:10<00:12, 43.2it/s]\r" * 3 + b"\n",
    "metrics": b"step 100 | loss: 0.25 acc=0.9 lr=3e-4 time: 12:00:01\n",
}


def parse_rate(name: str, line: bytes, mb: int = 16) -> None:
    data = line * (mb * 1024 * 1024 // len(line))
    start = time.perf_counter()
    splitter = ConsoleSplitter()
    points = 0
    for i in range(0, len(data), CHUNK):
        for text in splitter.feed(data[i : i + CHUNK]):
            points += len(parse_line(text))
    took = time.perf_counter() - start
    print(f"split+parse {name:9s} {len(data) / took / 1e6:6.1f} MB/s  {points} points")


def ingest(total_mb: int) -> None:
    block = b"".join(KINDS.values()) * 2000
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "s.sqlite3") as store:
        metrics = MetricStore(store)
        splitter = ConsoleSplitter()

        def parse(run_id: str, data: bytes) -> list[MetricPoint]:
            return [MetricPoint(s, t, 0.0, v) for line in splitter.feed(data)
                    for s, t, v in parse_line(line)]

        pos = 0
        start = time.perf_counter()
        while pos < total_mb * 1024 * 1024:
            batch = []
            for i in range(0, len(block), CHUNK):
                part = block[i : i + CHUNK]
                batch.append(("h", TailChunk("r1", "output.log", 1, pos, pos + len(part), part)))
                pos += len(part)
            metrics.ingest(batch, console_points=parse)
        took = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ingest {pos / 1e6:.0f} MB: {took:.1f} s, {pos / took / 1e6:.1f} MB/s, "
              f"{sum(s.count for s in metrics.series('r1'))} points, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    for kind, sample in KINDS.items():
        parse_rate(kind, sample)
    ingest(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
