"""Time ``decimate``: 1M points → 2000 pixel columns (target: under 20 ms), and zoomed.

Run: ``.venv/bin/python tests/bench/bench_decimate.py``. Not a pytest module: timings on a
shared machine are for reading, not asserting. Prints the best and the median of 30 runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.metrics.decimate import decimate

N, PIXELS, RUNS = 1_000_000, 2000, 30


def timed(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float] | None) -> tuple[float, float]:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        decimate(x, y, x_range, PIXELS)
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, statistics.median(times) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(N, dtype=np.int64)
    noisy = rng.standard_normal(N).cumsum()
    with_nan = noisy.copy()
    with_nan[rng.integers(0, N, 5000)] = np.nan
    cases = {
        "int steps, random walk": (steps, noisy, None),
        "float wall time, random walk": (1.7e9 + steps * 0.37, noisy, None),
        "int steps, 0.5% NaN": (steps, with_nan, None),
        "int steps, constant (all ties)": (steps, np.zeros(N), None),
        "zoomed to the middle 10%": (steps, noisy, (450_000.0, 550_000.0)),
    }
    print(f"decimate {N:,} points → {PIXELS} pixels (best / median of {RUNS}):")
    for name, (x, y, x_range) in cases.items():
        low, mid = timed(x, y, x_range)
        print(f"  {name:32s} {low:6.2f} ms / {mid:6.2f} ms")


if __name__ == "__main__":
    main()
