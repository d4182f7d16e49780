"""Starting, cancelling and reconciling runs on a host (app-side API).

The host side is ``agent/runctl.py`` (one request per call, JSON on stdin, JSON on stdout,
so no value ever travels on a command line) and ``agent/wrapper.py`` (the detached
process that holds the GPU leases, runs the job in its own process group and writes the
exit code). These functions work on any session that implements ``control``/``upload``:
HostSession over SSH and LocalSession on this machine alike.

Launch is idempotent per run id: launching an id whose run folder holds a launched run
only reports that run. A refused launch leaves the id free to try again; a retry after a
finished, failed or lost attempt needs a fresh id (``attempt_run_id``). Nothing the user
wrote ever reaches a command line: requests travel as JSON on runctl's stdin, and a
run's secrets go on from there to the wrapper through a pipe, into the job's environment
only (never job.json or any other file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from ssh_backend.events import Session

RunStatusKind = Literal["running", "finished", "failed", "lost", "unknown"]
KINDS: tuple[str, ...] = ("running", "finished", "failed", "lost", "unknown")
# Same alphabet as app.core.queue.runs.RUN_ID_RE and agent/rundir.py: run ids name host folders.
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{3,63}$")
_ATTEMPT_SUFFIX = re.compile(r"-a[0-9]+$")
# runctl waits up to 5 s for the wrapper to start the job; this covers that and a slow link.
CONTROL_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    run_id: str
    # The spec as launched, written to job.json (argv, env, setup lines, workdir, …).
    job: dict[str, Any]
    gpu_indices: tuple[int, ...]
    gpu_uuids: tuple[str, ...]
    # Snapshot of a local script/folder: relative path → content, written into the run dir.
    files: dict[str, bytes] = field(default_factory=dict)
    # Secret values for the job's environment only: sent as data inside the request,
    # never written to job.json; kept out of repr so no log or traceback shows them.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


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
    # Set with kind "finished": the run ended by a cancel / at its time limit.
    cancelled: bool = False
    timed_out: bool = False
    # The wrapper refused to start the job (a GPU lease was held): nothing of it ran.
    refused: bool = False
    # Kind "unknown" from a fencing reconcile: this attempt never reached the host and
    # now never will, so launching a new attempt elsewhere is safe.
    fenced: bool = False
    # Another attempt of the same run that is live on this host (a fencing reconcile).
    live_attempt: str | None = None


class LaunchRefused(Exception):
    """The host refused the launch (a GPU lease is held, disk full, …); the run can be
    queued again. The message says why, for the user. ``host_wide``: no run can start on
    that host now (its disk is full), so trying its other GPUs at once is pointless."""

    def __init__(self, message: str, *, host_wide: bool = False) -> None:
        super().__init__(message)
        self.host_wide = host_wide


class RunControlError(RuntimeError):
    """runctl on the host failed or answered something that is not a reply (a broken
    host or a bug); the message says which host and what it printed."""


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"not a valid run id: {run_id!r}")
    return run_id


def attempt_run_id(run_id: str, attempt: int) -> str:
    """The host-side id of a run's ``attempt`` (0 = first). Launch is idempotent per id,
    so a retry after a lost or failed attempt must launch under a fresh id."""
    check_run_id(run_id)
    return run_id if attempt <= 0 else check_run_id(f"{run_id}-a{attempt}")


def base_run_id(attempt_id: str) -> str:
    """The run an attempt id belongs to (``r123-a2`` → ``r123``): ``attempt_run_id``
    undone."""
    return _ATTEMPT_SUFFIX.sub("", attempt_id)


def upload_parts(files: dict[str, bytes]) -> list[tuple[tuple[str, ...], bytes]]:
    """Each upload path split into its folders and name, refusing any path that could
    land outside the run's code folder (absolute, ``..``, empty parts, NUL)."""
    checked = []
    for path, content in sorted(files.items()):
        parts = tuple(path.split("/"))
        if (
            not path
            or path.startswith("/")
            or "\0" in path
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ValueError(f"upload path {path!r} must be relative and stay in the run folder")
        if not isinstance(content, bytes):
            raise ValueError(f"upload content of {path!r} must be bytes")
        checked.append((parts, content))
    return checked


def decode_reply(host: str, code: int | None, out: bytes, err: str) -> dict[str, Any]:
    """runctl's reply as a dict; RunControlError when it failed or printed no reply."""
    why = next((line for line in reversed(err.splitlines()) if line.strip()), "")
    try:
        reply = json.loads(out)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep
        reply = None
    if code != 0 or not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        said = why or out[-300:].decode("utf-8", "replace").strip() or "no output"
        raise RunControlError(f"run control on {host} failed (exit code {code}): {said}")
    return reply


def _status(run_id: str, obj: Any) -> RunStatus:
    if not isinstance(obj, dict) or obj.get("kind") not in KINDS:
        raise RunControlError(f"run control sent an unreadable status for {run_id}: {obj!r}")

    def num(key: str) -> Any:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        # NaN, infinities and integers beyond float range would fail int() / float().
        return value if -1e18 < value < 1e18 else None

    def as_int(key: str) -> int | None:
        value = num(key)
        return int(value) if value is not None else None

    return RunStatus(
        run_id=run_id,
        kind=obj["kind"],
        exit_code=as_int("exit_code"),
        pid=as_int("pid"),
        pgid=as_int("pgid"),
        start_time=None if num("start_time") is None else float(num("start_time")),
        boot_id=obj["boot_id"] if isinstance(obj.get("boot_id"), str) else None,
        detail=str(obj.get("detail") or ""),
        cancelled=obj.get("cancelled") is True,
        timed_out=obj.get("timed_out") is True,
        refused=obj.get("refused") is True,
        fenced=obj.get("fenced") is True,
        live_attempt=_attempt_of(run_id, obj.get("live_attempt")),
    )


def _attempt_of(run_id: str, other: Any) -> str | None:
    """``other`` when it is an attempt id of the same run as ``run_id``, else None."""
    if not isinstance(other, str) or not RUN_ID_RE.fullmatch(other):
        return None
    return other if base_run_id(other) == base_run_id(run_id) else None


def expect_reply(session: Session, reply: dict[str, Any], key: str) -> Any:
    if reply.get("ok"):
        if key not in reply:
            raise RunControlError(f"run control on {session.name} sent no {key}")
        return reply[key]
    if isinstance(reply.get("refused"), str):
        raise LaunchRefused(f"{session.name}: {reply['refused']}",
                            host_wide=reply.get("host_wide") is True)
    raise RunControlError(f"run control on {session.name}: {reply.get('error')}")


def launch(session: Session, req: LaunchRequest) -> RunStatus:
    """Upload the snapshot (if any) and start the run; idempotent per run id.

    Returns the run's status (normally running; finished if it was quick or had been
    launched before). Raises LaunchRefused when a GPU lease is held or the run folder
    cannot be written, SessionUnavailable when the host is not connected.
    """
    check_run_id(req.run_id)
    if len(req.gpu_indices) != len(req.gpu_uuids):
        raise ValueError("a launch needs one GPU uuid per GPU index")
    if req.files:
        try:
            session.upload(req.run_id, req.files)
        except LaunchRefused:
            # What was written is of no use: a refused attempt leaves nothing behind.
            session.control({"op": "discard", "run_id": req.run_id})
            # SFTP says only "Failure" for a full disk: ask the host how much room it has,
            # which refuses with a clear "no space left" when that is the cause.
            expect_reply(session, session.control({"op": "space"}), "free_bytes")
            raise
    reply = session.control(
        {
            "op": "launch",
            "run_id": req.run_id,
            "job": req.job,
            "gpu_indices": list(req.gpu_indices),
            "gpu_uuids": list(req.gpu_uuids),
            "secrets": dict(req.secrets),
        },
        timeout=CONTROL_TIMEOUT_S,
    )
    return _status(req.run_id, expect_reply(session, reply, "status"))


def cancel(session: Session, run_id: str, grace_s: float = 30.0) -> RunStatus:
    """Ask the host to stop a run: TERM to its process group now, KILL after ``grace_s``
    (done by the run's wrapper, which still records the exit code). Returns at once with
    the status after TERM was sent; reconcile later to see it finished."""
    check_run_id(run_id)
    reply = session.control({"op": "cancel", "run_id": run_id, "grace_s": float(grace_s)})
    return _status(run_id, expect_reply(session, reply, "status"))


def reconcile(
    session: Session, run_ids: list[str], fence: Collection[str] = ()
) -> dict[str, RunStatus]:
    """The status of each run on the host (one round trip for all).

    ``fence``: those of ``run_ids`` whose launch went unanswered. The host settles each
    for good: launched, or fenced so that the request can never start it later (then
    kind "unknown" with ``fenced``), naming any other attempt of the run live there.
    """
    for run_id in run_ids:
        check_run_id(run_id)
    if not run_ids:
        return {}
    request: dict[str, Any] = {"op": "reconcile", "run_ids": list(run_ids)}
    fenced = [run_id for run_id in run_ids if run_id in set(fence)]
    if fenced:
        request["fence"] = fenced
    reply = session.control(request)
    statuses = expect_reply(session, reply, "statuses")
    if not isinstance(statuses, dict):
        raise RunControlError(f"run control on {session.name} sent unreadable statuses")
    return {run_id: _status(run_id, statuses.get(run_id)) for run_id in run_ids}
