"""A run's life: its states, the transitions allowed between them, and its record.

Every state change goes through the store as a compare-and-set on the state named here
(``UPDATE … WHERE id=? AND state=?``): a crash or a second process can never move a run
along an edge twice, so a run is never started twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ssh_backend import runs
from ssh_backend.runs import attempt_run_id


class RunState(enum.StrEnum):
    QUEUED = "queued"
    # Claimed by a dispatcher, launch in flight: on restart, reconcile decides its fate.
    LAUNCHING = "launching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The host rebooted (boot_id changed) under the run: its process is gone.
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST})

# The explicit state machine. Back to QUEUED is a retry (lost, failed) or a refused launch.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.LAUNCHING, RunState.CANCELLED}),
    RunState.LAUNCHING: frozenset(
        {RunState.RUNNING, RunState.QUEUED, RunState.FAILED, RunState.CANCELLED,
         RunState.SUCCEEDED, RunState.LOST}
    ),
    # RUNNING → QUEUED: its wrapper refused the GPU lease after the launch had reported
    # it starting (a very slow start): the job never ran.
    RunState.RUNNING: frozenset(
        {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST,
         RunState.QUEUED}
    ),
    RunState.SUCCEEDED: frozenset({RunState.QUEUED}),
    RunState.FAILED: frozenset({RunState.QUEUED}),
    RunState.CANCELLED: frozenset({RunState.QUEUED}),
    RunState.LOST: frozenset({RunState.QUEUED}),
}

# Run ids name folders on hosts: one safe alphabet, the backend's (checked on both ends).
RUN_ID_RE = runs.RUN_ID_RE


class TransitionError(ValueError):
    """A state change the state machine does not allow (a bug, not a race)."""


def check_transition(old: RunState, new: RunState) -> None:
    if new not in TRANSITIONS[old]:
        raise TransitionError(f"a run cannot go from {old} to {new}")


class RunRecord:
    """What every record of a run has (``Run``, a row of the runs table): its id and
    attempt, hence the one spelling of its current attempt's id on its host."""

    __slots__ = ()
    id: str
    attempt: int

    @property
    def host_run_id(self) -> str:
        """The id of the run's current attempt on its host: its folder, lease,
        ``LABDECK_RUN_ID`` and the key of its curves and console in the metric store.
        Launch is idempotent per folder, so each retry needs its own."""
        return attempt_run_id(self.id, self.attempt)


@dataclass(frozen=True, slots=True)
class Run(RunRecord):
    """One queued or launched run as stored locally (spec as JSON-ready dict)."""

    id: str
    name: str
    spec: dict[str, Any]
    state: RunState
    user: str
    priority: int = 0
    created_at: float = 0.0
    # Position in the FIFO among equal priority; moved by "move up/down".
    seq: int = 0
    attempt: int = 0
    host: str | None = None
    gpus: tuple[int, ...] = ()
    gpu_uuids: tuple[str, ...] = ()
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    boot_id: str | None = None
    # A user-facing sentence: why it failed, why it waits, why it was lost.
    reason: str = ""
    tags: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    # Set by "cancel" on a launching/running run; the dispatcher acts on it.
    cancel_requested: bool = False
    # When it last entered QUEUED (submit or retry): the scheduler's wait clock.
    queued_at: float | None = None
