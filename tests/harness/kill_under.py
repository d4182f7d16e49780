"""Kill every process whose HOME lies under a test's folder (agents, runs, a simulated
other user), should one outlive the test that started it."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def kill_under(root: Path) -> None:
    needle = f"HOME={root}".encode()
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if any(v.startswith(needle) for v in env.read_bytes().split(b"\0")):
                pid = int(env.parent.name)
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue
