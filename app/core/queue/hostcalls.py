"""The dispatcher's calls to hosts (launch, reconcile, cancel), made on its worker threads.

Each call records what the host answered as compare-and-set transitions of the run (see
``reconciler.apply_status``); a call cut off by the network leaves the run as it was
and asks for a reconcile of that host, which settles it once the host answers again.
``Shared`` is the little state the loop and these calls share, under one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core.hosts.cluster import ClusterMonitor
from app.core.jobs import secrets
from app.core.jobs.jobspec import JobSpec, host_job, snapshot_files
from app.core.queue.reconciler import apply_status
from app.core.queue.runs import Run, RunState
from app.core.queue.runstore import RunStore
from app.core.queue.scheduler import Policy
from ssh_backend import runs as host_runs
from ssh_backend.runs import LaunchRefused, LaunchRequest, RunStatus

log = logging.getLogger("app.core.queue.dispatcher")


class RunControl(Protocol):
    """The host side of runs; ``ssh_backend.runs`` in the app, a fake in unit tests."""

    def launch(self, session: Any, req: LaunchRequest) -> RunStatus: ...

    def cancel(self, session: Any, run_id: str, grace_s: float = 30.0) -> RunStatus: ...

    def reconcile(
        self, session: Any, run_ids: list[str], fence: Collection[str] = ()
    ) -> dict[str, RunStatus]: ...


class SshRunControl:
    """``RunControl`` over the sessions' control channel (``ssh_backend.runs``)."""

    def launch(self, session: Any, req: LaunchRequest) -> RunStatus:
        return host_runs.launch(session, req)

    def cancel(self, session: Any, run_id: str, grace_s: float = 30.0) -> RunStatus:
        return host_runs.cancel(session, run_id, grace_s=grace_s)

    def reconcile(
        self, session: Any, run_ids: list[str], fence: Collection[str] = ()
    ) -> dict[str, RunStatus]:
        return host_runs.reconcile(session, run_ids, fence)


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    policy: Policy = field(default_factory=Policy)
    # Longest sleep between steps when nothing wakes the loop.
    tick_s: float = 1.0
    # How often a host with running runs is asked about them (finish noticed within this).
    poll_s: float = 3.0
    # Never ask one host more often than this (lease changes in samples ask early).
    min_poll_gap_s: float = 0.5
    workers: int = 6
    cancel_grace_s: float = 30.0
    # A GPU whose launch was refused is left alone this long (the sample that shows who
    # holds it may not have arrived yet): no refuse/requeue/claim spin on it.
    refused_cooldown_s: float = 2.0
    # A host that refused for a reason of its own (disk full) gets no launch for this
    # long, doubled on each refusal in a row up to the max: no refuse/requeue spin on it.
    host_refused_backoff_s: float = 2.0
    host_refused_backoff_max_s: float = 60.0
    # A GPU that keeps refusing (its lease held by something the samples do not show) is
    # left alone for refused_cooldown_s, doubled on each refusal in a row up to this.
    refused_cooldown_max_s: float = 60.0
    # A run refused this many times in a row is tried only every refused_cooldown_max_s
    # from then on (it waits, saying why: most refusals end by themselves).
    max_refusals: int = 10
    # A host whose reconcile keeps failing (a broken runctl, no python3) is asked again
    # after this, doubled each time up to the max.
    reconcile_backoff_max_s: float = 60.0
    # Queued runs get the scheduler's reason for waiting this often, the first N of them.
    reason_every_s: float = 2.0
    reasons_max: int = 200
    # A cancel not yet seen finished is sent again after this (its TERM may have been lost).
    cancel_resend_s: float = 45.0
    # Steps closer together than this only when woken by something that matters.
    min_step_gap_s: float = 0.05


@dataclass(slots=True)
class Shared:
    """What the loop and the worker threads both read and write (hold ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # Hosts whose launched runs must be reconciled before new runs go there: every host
    # at start, and each host again whenever it comes (back) online.
    needs_reconcile: set[str] = field(default_factory=set)
    online: set[str] = field(default_factory=set)
    # Hosts to ask early (a lease vanished from a sample, a cancel was sent).
    poked: set[str] = field(default_factory=set)
    # Runs whose launch call is in progress in this process: reconcile leaves them be.
    launching: set[str] = field(default_factory=set)
    cooldown: dict[tuple[str, int], float] = field(default_factory=dict)
    # Host → (no launch before this monotonic time, the backoff that set it).
    host_cooldown: dict[str, tuple[float, float]] = field(default_factory=dict)
    cancel_sent: dict[str, float] = field(default_factory=dict)
    # (host, GPU) → the cooldown its last refusal set (doubles while it keeps refusing).
    gpu_backoff: dict[tuple[str, int], float] = field(default_factory=dict)
    # Run → refusals in a row, and the monotonic time before which a run refused too
    # often is not placed again.
    run_refusals: dict[str, int] = field(default_factory=dict)
    run_hold: dict[str, float] = field(default_factory=dict)
    # Host → (no reconcile before this monotonic time, the backoff that set it).
    reconcile_backoff: dict[str, tuple[float, float]] = field(default_factory=dict)
    # host → GPU index → host-side id of the running run whose lease samples should show.
    expected: dict[str, dict[int, str]] = field(default_factory=dict)
    seen_leased: set[str] = field(default_factory=set)
    # Queued runs are waiting for a GPU: new samples are worth a step.
    waiting: bool = False


class HostCalls:
    def __init__(
        self,
        monitor: ClusterMonitor,
        runstore: RunStore,
        control: RunControl,
        shared: Shared,
        options: DispatchOptions,
        notify: Callable[[str], None],
        wake: Callable[[], None],
    ) -> None:
        self._monitor = monitor
        self._runstore = runstore
        self._control = control
        self._shared = shared
        self._options = options
        self._notify = notify
        self._wake = wake

    def move(self, run: Run, new: RunState, **fields: Any) -> bool:
        """CAS ``run`` from the state it was read in to ``new``; tell listeners."""
        if not self._runstore.transition(run.id, run.state, new, **fields):
            return False
        log.info("run %s: %s → %s %s", run.id, run.state, new, fields.get("reason") or "")
        if new is RunState.RUNNING and run.host:
            with self._shared.lock:  # watch its lease from the next sample, not next step
                for gpu in run.gpus:
                    self._shared.expected.setdefault(run.host, {})[gpu] = run.host_run_id
        self._notify(run.id)
        return True

    def launch(self, run: Run) -> None:
        try:
            self._launch(run)
        finally:
            with self._shared.lock:
                self._shared.launching.discard(run.id)
            self._wake()

    def _launch(self, run: Run) -> None:
        name = run.host or ""
        session = self._monitor.session(name)
        view = self._monitor.host(name)
        if session is None or view is None:
            self.move(run, RunState.QUEUED, reason=f"host {name} was removed; queued again")
            return
        try:
            spec = JobSpec.from_dict(run.spec)
            sim_host = name if view.spec.simulated else None
            job = host_job(spec, run.host_run_id, run.gpus, run.gpu_uuids, sim_host=sim_host)
            files = snapshot_files(spec)
            # Read from the keyring at every launch (a retry too); a missing secret fails
            # the run with its name and the command that sets it (SecretsError is a
            # ValueError). Failing, not waiting: the user hears of it at once, and a run
            # that cannot start never holds a place on a GPU.
            values = secrets.resolve(spec.secrets) if spec.secrets else {}
        except (ValueError, OSError) as exc:
            self.move(run, RunState.FAILED, ended_at=time.time(), reason=f"cannot launch: {exc}")
            return
        request = LaunchRequest(run.host_run_id, job, run.gpus, run.gpu_uuids, files,
                                secrets=values)
        try:
            status = self._control.launch(session, request)
        except LaunchRefused as exc:
            self._refused(run, name, str(exc), exc.host_wide)
            return
        except Exception as exc:
            # Cut off mid-call: the host may or may not have started it, or may start it
            # later (a runctl still starting on a loaded host). The run stays LAUNCHING;
            # reconcile fences this attempt on the host before anything is retried.
            log.warning("run %s: launch on %s did not complete: %s", run.id, name, exc)
            with self._shared.lock:
                self._shared.needs_reconcile.add(name)
            return
        with self._shared.lock:
            self._shared.host_cooldown.pop(name, None)  # the host takes runs again
            self._shared.run_refusals.pop(run.id, None)
            self._shared.run_hold.pop(run.id, None)
            for gpu in run.gpus:
                self._shared.gpu_backoff.pop((name, gpu), None)
        apply_status(run, status, self.move)

    def _refused(self, run: Run, name: str, why: str, host_wide: bool) -> None:
        """A refused launch: the host removed the attempt's folder, so the run goes back
        to the queue under the same attempt id. The GPUs that refused are left alone for
        a cooldown that doubles while they keep refusing; a host-wide refusal (disk full,
        leases that cannot be taken at all) blocks the whole host the same way and does
        not count against the run, which waits saying why. After ``max_refusals`` in a
        row the run fails with the last reason."""
        opts = self._options
        if host_wide:
            delay = self._host_refused(name)
            self.move(run, RunState.QUEUED, keep_attempt=True,
                      reason=f"launch refused on {why}; waiting, next try there in {delay:g} s")
            return
        now = time.monotonic()
        with self._shared.lock:
            delay = opts.refused_cooldown_s
            for gpu in run.gpus:
                last = self._shared.gpu_backoff.get((name, gpu), 0.0)
                delay = max(delay, min(opts.refused_cooldown_max_s, last * 2))
            for gpu in run.gpus:
                self._shared.gpu_backoff[(name, gpu)] = delay
                self._shared.cooldown[(name, gpu)] = now + delay
            count = self._shared.run_refusals.get(run.id, 0) + 1
            self._shared.run_refusals[run.id] = count
            if count >= opts.max_refusals:
                self._shared.run_hold[run.id] = now + opts.refused_cooldown_max_s
        reason = f"launch refused on {why}"
        if count >= opts.max_refusals:
            reason = (f"launch refused {count} times in a row, trying again every "
                      f"{opts.refused_cooldown_max_s:g} s; last: {why}")
        self.move(run, RunState.QUEUED, keep_attempt=True, reason=reason)

    def _host_refused(self, name: str) -> float:
        """Keep launches off host ``name`` for a backoff that doubles while it refuses."""
        opts = self._options
        return self._back_off(self._shared.host_cooldown, name,
                              opts.host_refused_backoff_s, opts.host_refused_backoff_max_s)

    def _back_off(self, table: dict[str, tuple[float, float]], name: str,
                  first: float, most: float) -> float:
        """The one backoff rule: ``first``, doubled on each failure in a row, at most
        ``most``; ``table[name]`` keeps (no try before this monotonic time, the delay)."""
        with self._shared.lock:
            _until, last = table.get(name, (0.0, 0.0))
            delay = min(most, last * 2 if last else first)
            table[name] = (time.monotonic() + delay, delay)
        return delay

    def reconcile(self, name: str) -> None:
        session = self._monitor.session(name)
        if session is None:
            return
        shared = self._shared
        with shared.lock:
            full = name in shared.needs_reconcile
            shared.needs_reconcile.discard(name)
        try:
            runs = self._runstore.running_on(name)
            with shared.lock:
                # Read after the runs: a run is marked launching before it is claimed, so
                # a launch in progress is never taken for one that never reached the host.
                launching = set(shared.launching)
            runs = [run for run in runs if run.id not in launching]
            ids = [run.host_run_id for run in runs]
            # Every LAUNCHING run not being launched right now has a launch whose outcome
            # is unknown (a timeout, a cut, this app killed mid-launch): the host fences
            # it, so a request still on its way can never start it beside a retry.
            fence = [run.host_run_id for run in runs if run.state is RunState.LAUNCHING]
            statuses = self._control.reconcile(session, ids, fence) if runs else {}
        except Exception as exc:
            delay = self._reconcile_failed(name)
            log.info("%s: reconcile did not complete (next try in %g s): %s", name, delay, exc)
            if full:
                with shared.lock:
                    shared.needs_reconcile.add(name)
            return
        with shared.lock:
            shared.reconcile_backoff.pop(name, None)
        for run in runs:
            status = statuses.get(run.host_run_id)
            if status is not None:
                apply_status(run, status, self.move)
        self._wake()

    def _reconcile_failed(self, name: str) -> float:
        """Ask a host whose reconcile fails (broken runctl, no python3) less and less
        often, instead of every step."""
        opts = self._options
        return self._back_off(self._shared.reconcile_backoff, name, opts.min_poll_gap_s,
                              opts.reconcile_backoff_max_s)

    def reconcile_due(self, name: str, now: float) -> bool:
        with self._shared.lock:
            until, _delay = self._shared.reconcile_backoff.get(name, (0.0, 0.0))
        return now >= until

    def cancel(self, run: Run) -> None:
        host = run.host or ""
        session = self._monitor.session(host)
        if session is None:
            return
        try:
            self._control.cancel(session, run.host_run_id, grace_s=self._options.cancel_grace_s)
            log.info("run %s: cancel sent to %s", run.id, host)
        except Exception as exc:
            log.warning("run %s: cancel on %s did not complete: %s", run.id, host, exc)
            with self._shared.lock:  # try again soon rather than after cancel_resend_s
                retry_at = time.monotonic() - self._options.cancel_resend_s + 2.0
                self._shared.cancel_sent[run.id] = retry_at
        with self._shared.lock:
            self._shared.poked.add(host)
        self._wake()
