"""A saturated CPU, for real: busy processes beside the code under test.

Timeouts that only hold on an idle machine turn slowness into duplicates; the reliability
tests run with every core kept busy by other processes, as on a lab's shared laptop
building something at the same time. ``LABDECK_BURN`` sets how many burner processes
(default: twice the cores; 0 switches the burner off).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "LABDECK_BURN"
# Plain arithmetic forever; the parent's death (SIGKILL of pytest) ends it too.
_SPIN = (
    "import ctypes, signal\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "x = 0\n"
    "while True:\n"
    "    x = (x * 1103515245 + 12345) & 0xFFFFFFFF\n"
)


def burner_count() -> int:
    raw = os.environ.get(ENV, "")
    if raw.strip():
        return max(0, int(raw))
    return 2 * (os.cpu_count() or 1)


@contextmanager
def burning(count: int | None = None) -> Iterator[list[int]]:
    """Keep ``count`` processes spinning on the CPU while the block runs; their pids."""
    count = burner_count() if count is None else count
    procs = [
        subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
