"""What a run's status on its host means for its state in the store.

The host is the truth about a launched run (its run dir, exit code, process, boot id);
the store only follows it. Every change here is a compare-and-set from the state the
caller read, so a second dispatcher (or this one's own launch thread) that got there
first simply wins, and nothing is recorded twice.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.core.queue.runs import Run, RunState
from ssh_backend.runs import RunStatus

log = logging.getLogger("app.core.queue.dispatcher")

# ``move(run, new_state, **fields) -> bool``: the dispatcher's CAS + notification.
Move = Callable[..., bool]

REASON_LOST = "the host rebooted while the run was on it; its processes are gone"
REASON_RETRY_LOST = "host rebooted; retrying"
REASON_NEVER_LAUNCHED = "the launch never reached {host}; queued again"
REASON_LIVE_ATTEMPT = "attempt {other} of this run is still live on {host}; waiting for it"


def exit_reason(code: int | None) -> str:
    """A sentence for a non-zero exit code (signal deaths are 128 + signal number)."""
    if code is None:
        return "ended without an exit code"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            return f"exited with code {code}"
        return f"killed by {name} (exit code {code})"
    return f"exited with code {code}"


def may_retry_lost(run: Run) -> bool:
    """Whether a lost run goes back to the queue (spec's retry_on_lost / max_retries)."""
    spec: dict[str, Any] = run.spec
    if not spec.get("retry_on_lost", True):
        return False
    max_retries = spec.get("max_retries", 3)
    # ``attempt`` counts every return to the queue, refused launches included: a run
    # that keeps being refused and lost is stopped rather than retried without end.
    return isinstance(max_retries, int) and run.attempt < max_retries


def apply_status(run: Run, status: RunStatus, move: Move) -> RunState | None:
    """Record ``status`` (from launch or reconcile) for ``run`` as read from the store.

    Returns the state the run ends up in, or None when nothing changed (already in that
    state, or someone else moved it first).
    """
    now = time.time()
    kind = status.kind
    if kind == "running":
        if run.state is RunState.LAUNCHING and move(
            run, RunState.RUNNING, pid=status.pid, boot_id=status.boot_id,
            started_at=now, reason="",
        ):
            return RunState.RUNNING
        return None
    if kind == "finished":
        return _finished(run, status, move, now)
    if kind == "lost":
        if not move(run, RunState.LOST, ended_at=now, reason=REASON_LOST):
            return None
        lost = replace(run, state=RunState.LOST, ended_at=now)
        if may_retry_lost(run) and move(lost, RunState.QUEUED, reason=REASON_RETRY_LOST):
            return RunState.QUEUED
        return RunState.LOST
    if kind == "unknown":
        if run.state is RunState.LAUNCHING:
            if not status.fenced or status.live_attempt:
                # Without a fence, a launch request still on its way could start this
                # attempt later; with another attempt live there, a new one would run
                # beside it. Either way: wait, and ask again at the next reconcile.
                log.warning("run %s: %s", run.id, REASON_LIVE_ATTEMPT.format(
                    other=status.live_attempt, host=run.host) if status.live_attempt
                    else "launch outcome still unknown; waiting for the host")
                return None
            # Fenced: the launch never got there and now never will (a cut or a timeout
            # between claim and launch). A new attempt is safe, on any host.
            reason = REASON_NEVER_LAUNCHED.format(host=run.host)
            return RunState.QUEUED if move(run, RunState.QUEUED, reason=reason) else None
        detail = status.detail or f"the run's folder is gone from {run.host}"
        return RunState.FAILED if move(run, RunState.FAILED, ended_at=now, reason=detail) else None
    if status.refused and run.state in (RunState.LAUNCHING, RunState.RUNNING):
        # The wrapper refused the GPU lease after runctl stopped waiting for it: the job
        # never ran. Its folder stays (refused.json says why), so the retry is a new attempt.
        reason = f"launch refused on {run.host} ({status.detail}); queued again"
        return RunState.QUEUED if move(run, RunState.QUEUED, reason=reason) else None
    # "failed": the run dir exists but the process is gone without an exit code.
    if run.state is RunState.LAUNCHING and status.pid is None:
        # The job itself never started (no state.json): the launch was cut short on the
        # host. Queue it again; the next attempt gets a fresh run folder.
        reason = f"the launch on {run.host} was cut short ({status.detail}); queued again"
        return RunState.QUEUED if move(run, RunState.QUEUED, reason=reason) else None
    detail = status.detail or "the run's process ended without writing an exit code"
    return RunState.FAILED if move(run, RunState.FAILED, ended_at=now, reason=detail) else None


def _finished(run: Run, status: RunStatus, move: Move, now: float) -> RunState | None:
    code = status.exit_code
    if run.cancel_requested or status.cancelled:
        new, reason = RunState.CANCELLED, f"cancelled ({exit_reason(code)})"
    elif status.timed_out:
        new, reason = RunState.FAILED, f"stopped at its time limit ({exit_reason(code)})"
    elif code == 0:
        new, reason = RunState.SUCCEEDED, ""
    else:
        new, reason = RunState.FAILED, exit_reason(code)
        if status.detail:
            reason = f"{reason}: {status.detail}"
    fields: dict[str, Any] = {"exit_code": code, "ended_at": now, "reason": reason}
    if run.state is RunState.LAUNCHING:
        fields.update(pid=status.pid, boot_id=status.boot_id)
    return new if move(run, new, **fields) else None
