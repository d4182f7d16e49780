"""Starting, cancelling and reconciling runs on a host (app-side API).

The host side is ``agent/runctl.py`` (one request per call, JSON on stdin, JSON on stdout,
so no value ever travels on a command line) and ``agent/wrapper.py`` (the detached
process that holds the GPU leases, runs the job in its own process group and writes the
exit code). These functions work on any session that implements ``control``/``upload``:
HostSession over SSH and LocalSession on this machine alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RunStatusKind = Literal["running", "finished", "failed", "lost", "unknown"]


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    run_id: str
    # The spec as launched, written to job.json (argv, env, setup lines, workdir, …).
    job: dict[str, Any]
    gpu_indices: tuple[int, ...]
    gpu_uuids: tuple[str, ...]
    # Snapshot of a local script/folder: relative path → content, written into the run dir.
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunStatus:
    run_id: str
    kind: RunStatusKind
    exit_code: int | None = None
    pid: int | None = None
    pgid: int | None = None
    start_time: float | None = None
    boot_id: str | None = None
    detail: str = ""


class LaunchRefused(Exception):  # noqa: N818 - it is an outcome, not a bug
    """The host refused the launch (a GPU lease is held, disk full, …); the run can be
    queued again. The message says why, for the user."""
