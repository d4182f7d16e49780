"""The dispatcher: queued runs onto free GPUs, and every launched run's fate back home.

One plain thread with a stop flag and a wake event (no Qt), woken by a submit or cancel
(``wake()``), a host's state change or sample (the monitor's events on the bus) and a
periodic tick. Each step it (1) asks each host that just came online about its launched
runs, and polls the hosts that have running runs, (2) carries out cancel requests, and
(3) places queued runs with ``scheduler.plan`` and claims each one with a compare-and-set
before launching it. Calls to hosts run on a small pool of worker threads
(``hostcalls``), at most one reconcile per host at a time, so a slow host stalls neither
the loop nor the other hosts. Every change of a run's state it makes is published as a
``RunChanged`` on the monitor's bus. The same class runs in the window and in ``labdeck serve``;
of several on one store only the holder of the ``QueueLock`` works, the others wait.

Safety: a run is launched only by the dispatcher whose claim (QUEUED → LAUNCHING) won;
the wrapper's GPU lease refuses a GPU that another Labdeck or a person got first; and a
launch that may or may not have reached its host stays LAUNCHING until reconcile, which
asks the host, decides (launch is idempotent, so a retry never starts a second process).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from app.core.events import Event, HostChanged, HostRemoved, HostSample, RunChanged
from app.core.hosts.cluster import ClusterMonitor, HostView
from app.core.queue.fairshare import LabState, demand_of
from app.core.queue.gpufree import Need
from app.core.queue.hostcalls import (
    DispatchOptions,
    HostCalls,
    RunControl,
    Shared,
    SshRunControl,
)
from app.core.queue.labwatch import LabWatch
from app.core.queue.queuelock import QueueLock
from app.core.queue.runs import Run, RunState
from app.core.queue.runstore import RunStore
from app.core.queue.scheduler import Placement, explain, plan
from app.core.queue.taskpool import TaskPool
from app.core.store import Store
from ssh_backend.states import HostState

__all__ = ["DispatchOptions", "Dispatcher", "RunControl"]

log = logging.getLogger(__name__)


class Dispatcher:
    """See the module docstring. ``start()``/``stop()``; ``wake()`` after a submit/cancel."""

    def __init__(
        self,
        store: Store,
        monitor: ClusterMonitor,
        options: DispatchOptions | None = None,
        control: RunControl | None = None,
    ) -> None:
        self._store = store
        self.runstore = RunStore(store)
        self._monitor = monitor
        self._bus = monitor.bus
        self._options = options or DispatchOptions()
        self._shared = Shared()
        self._calls = HostCalls(
            monitor, self.runstore, control or SshRunControl(), self._shared,
            self._options, self._notify, self.wake,
        )
        self._pool = TaskPool(self._options.workers, "labdeck-dispatch")
        self.lab = LabWatch()
        self._queue_lock = QueueLock(store.path)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll: dict[str, float] = {}
        self._last_step = 0.0
        self._host_tags: dict[str, list[str]] = {}
        self._tags_read_at = -1e9
        self._said_passive = False
        self._explained_at = -1e9
        self._reserved: dict[tuple[str, int], str] = {}
        self._reserved_lock = threading.Lock()
        self._said: dict[str, tuple[int, int | None]] = {}

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        with self._shared.lock:
            self._shared.needs_reconcile = set(self._monitor.names())
        self._bus.subscribe(self._on_host_event, (HostChanged, HostSample, HostRemoved))
        for name in self._monitor.names():
            self._on_host_changed(name)
        self._pool.start()
        self._own_queue()  # now, so that ``dispatching`` is right once start() returns
        self._thread = threading.Thread(target=self._run, name="labdeck-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and the workers. Runs on hosts keep running; a launch cut short
        stays LAUNCHING, and the next start's reconcile settles it."""
        self._stop.set()
        self._wake.set()
        self._bus.unsubscribe(self._on_host_event)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._pool.stop(timeout)
        self._queue_lock.release()

    def wake(self) -> None:
        """Look at the queue now (after a submit, a cancel, a reservation)."""
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every host settled and was reconciled, and nothing more can be done
        right now (no host call in flight, no queued run that fits anywhere)."""
        return self._idle.wait(timeout)

    @property
    def dispatching(self) -> bool:
        """False while another dispatcher holds this queue (see ``passive_reason``)."""
        return self._queue_lock.held

    def passive_reason(self) -> str:
        if self._queue_lock.held:
            return ""
        pid = self._queue_lock.holder()
        who = f"another Labdeck (pid {pid})" if pid else "another Labdeck"
        return f"{who} dispatches this queue; this one takes over when it stops"

    # -- host events (session threads: only flags and a wake here) --------------------
    def _on_host_event(self, event: Event) -> None:
        if isinstance(event, HostSample):
            self._on_host_sample(event)
        elif isinstance(event, HostChanged):
            self._on_host_changed(event.host)
        elif isinstance(event, HostRemoved):
            self._on_host_removed(event.host)

    def _on_host_changed(self, name: str) -> None:
        view = self._monitor.host(name)
        online = view is not None and view.state is HostState.ONLINE
        shared = self._shared
        with shared.lock:
            if online and name not in shared.online:
                shared.online.add(name)
                shared.needs_reconcile.add(name)
            elif not online:
                shared.online.discard(name)
        self.wake()

    def _on_host_sample(self, event: HostSample) -> None:
        name = event.host
        shared = self._shared
        with shared.lock:
            expected = shared.expected.get(name, {})
            ended = False
            for reading in event.sample.gpus:
                run_id = expected.get(reading.index)
                if run_id is None:
                    continue
                if reading.leased_by == run_id:
                    shared.seen_leased.add(run_id)
                elif run_id in shared.seen_leased:
                    ended = True  # its lease is gone: the run has ended, ask now
            if ended:
                shared.poked.add(name)
            wake = ended or shared.waiting
        if wake:
            self.wake()

    def _on_host_removed(self, name: str) -> None:
        self.lab.forget(name)
        with self._shared.lock:
            self._shared.online.discard(name)
            self._shared.needs_reconcile.discard(name)
        self.wake()

    # -- the loop ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._options.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            # Samples arrive many times a second: at most one step per min_step_gap_s.
            gap = self._last_step + self._options.min_step_gap_s - time.monotonic()
            if gap > 0 and self._stop.wait(gap):
                break
            self._last_step = time.monotonic()
            try:
                if self._own_queue():
                    self.step()
            except Exception:
                # The store busy past its timeout, a bug: log it, try again next step.
                log.exception("dispatcher step failed")

    def _own_queue(self) -> bool:
        if self._queue_lock.try_acquire():
            if self._said_passive:
                log.info("taking over the queue")
                self._said_passive = False
            return True
        if not self._said_passive:
            log.info("%s", self.passive_reason())
            self._said_passive = True
        return False

    def step(self) -> None:
        """One pass: reconcile/poll, cancels, placements (on the loop thread)."""
        now = time.monotonic()
        views = {view.name: view for view in self._monitor.hosts()}
        active = self.runstore.active()
        self._track(active)
        self._read_reserved(views)
        self._schedule_cancels(active, views, now)
        self._schedule_polls(active, views, now)
        self._schedule_boards(views, now)
        self._remember_hosts(views)
        placed = self._dispatch(active, views, now)
        self._update_idle(views, placed)

    def _track(self, active: list[Run]) -> None:
        expected: dict[str, dict[int, str]] = defaultdict(dict)
        for run in active:
            if run.state is RunState.RUNNING and run.host:
                for gpu in run.gpus:
                    expected[run.host][gpu] = run.host_run_id
        ids = {run.id for run in active}
        host_ids = {run.host_run_id for run in active}
        shared = self._shared
        with shared.lock:
            shared.expected = dict(expected)
            shared.seen_leased &= host_ids
            for run_id in [r for r in shared.cancel_sent if r not in ids]:
                del shared.cancel_sent[run_id]

    def _schedule_cancels(self, active: list[Run], views: dict[str, HostView], now: float) -> None:
        for run in active:
            # A launching run is cancelled once it runs (or ends CANCELLED if requeued).
            if not run.cancel_requested or run.state is not RunState.RUNNING or not run.host:
                continue
            if not _online(views, run.host):
                continue
            with self._shared.lock:
                sent = self._shared.cancel_sent.get(run.id)
                if sent is not None and now - sent < self._options.cancel_resend_s:
                    continue
                self._shared.cancel_sent[run.id] = now
            self._pool.submit(f"cancel:{run.id}", functools.partial(self._calls.cancel, run))

    def _schedule_polls(self, active: list[Run], views: dict[str, HostView], now: float) -> None:
        hosts_with_runs = {run.host for run in active if run.host}
        for name, view in views.items():
            if view.state is not HostState.ONLINE:
                continue
            with self._shared.lock:
                full = name in self._shared.needs_reconcile
                poked = name in self._shared.poked
            if not full and name not in hosts_with_runs:
                continue
            if not self._calls.reconcile_due(name, now):
                continue
            # A host that keeps failing its reconcile is asked at most every min gap.
            gap = self._options.min_poll_gap_s if full or poked else self._options.poll_s
            if now - self._last_poll.get(name, -1e9) < gap:
                continue
            task = functools.partial(self._calls.reconcile, name)
            if self._pool.submit(f"reconcile:{name}", task):
                self._last_poll[name] = now
                with self._shared.lock:
                    self._shared.poked.discard(name)

    def reserved_now(self) -> dict[tuple[str, int], str]:
        """Every reserved GPU, (host, index) → 'reserved by … until …': the lab's (from
        the hosts' boards) and this store's older local ones. Kept by each step, so any
        thread (the GUI's too) reads it without touching the store."""
        with self._reserved_lock:
            return dict(self._reserved)

    def _read_reserved(self, views: dict[str, HostView]) -> None:
        reserved: dict[tuple[str, int], str] = dict.fromkeys(self.runstore.reserved(), "")
        reserved.update(self.lab.reserved(views.values()))
        with self._reserved_lock:
            self._reserved = reserved

    def _remember_hosts(self, views: dict[str, HostView]) -> None:
        """Keep what each host says of itself (its GPUs, this user's lab quota there) in
        the store: submits are checked against it while the host is offline, and by the
        CLI, which does not connect (``app.core.jobs.feasibility``)."""
        boards = self.lab.boards()
        for name, view in views.items():
            if view.sample is None:
                continue
            board = boards.get(name)
            quota = board.my_quota if board is not None else self._said.get(name, (0, None))[1]
            said = (len(view.sample.gpus), quota)
            if self._said.get(name) == said:
                continue
            self._said[name] = said
            try:
                self._store.note_host_said(name, *said)
            except Exception as exc:  # a full disk: the submit check only knows less
                log.info("%s: what the host said was not stored: %s", name, exc)

    def _schedule_boards(self, views: dict[str, HostView], now: float) -> None:
        """Read each online host's lab board now and then, publishing this Labdeck's
        waiting demand for the runs that may go there in the same call."""
        due = [name for name, view in views.items()
               if view.state is HostState.ONLINE and self.lab.due(name, now)]
        if not due:
            return
        queued = self.runstore.queued()
        tags = self._tags(now)
        for name in due:
            session = self._monitor.session(name)
            if session is None:
                continue
            demand = demand_of(
                (Need.of(run).gpus, run.queued_at or run.created_at, run.priority)
                for run in queued if _may_use(run, name, tags.get(name, ())))
            self._pool.submit(f"board:{name}",
                              functools.partial(self.lab.poll, session, name, demand))

    def _dispatch(self, active: list[Run], views: dict[str, HostView], now: float) -> bool:
        queued = self.runstore.queued()
        shared = self._shared
        with shared.lock:
            # Refusal counts of runs no longer waiting (started, cancelled) are done.
            ids = {run.id for run in queued} | shared.launching
            for run_id in [r for r in shared.run_refusals if r not in ids]:
                del shared.run_refusals[run_id]
                shared.run_hold.pop(run_id, None)
            held = {r for r, until in shared.run_hold.items() if until > now}
        if held:
            queued = [run for run in queued if run.id not in held]
        if not queued:
            with shared.lock:
                shared.waiting = False
            return False
        in_flight = {(run.host, gpu) for run in active if run.host for gpu in run.gpus}
        with shared.lock:
            for key, until in list(shared.cooldown.items()):
                if until <= now:
                    del shared.cooldown[key]
            in_flight |= set(shared.cooldown)
            blocked = set(shared.needs_reconcile)
            # Hosts refusing every launch (disk full) until their backoff is over.
            blocked |= {host for host, (until, _delay) in shared.host_cooldown.items()
                        if until > now}
        # Not before the host's lab board was read once: its reservations are not known.
        blocked |= {name for name in views if not self.lab.settled(name)}
        per_user: dict[str, int] = defaultdict(int)
        for run in active:
            per_user[run.user] += 1
        mine: dict[str, int] = defaultdict(int)  # GPUs of this app's runs, per host
        for run in active:
            if run.host:
                mine[run.host] += len(run.gpus)
        reserved = self.reserved_now()
        lab = self.lab.state(views.values(), mine)
        placements = plan(
            queued,
            [view for name, view in views.items() if name not in blocked],
            reserved,
            in_flight,
            self._options.policy,
            host_tags=self._tags(now),
            active_per_user=per_user,
            now=time.time(),
            lab=lab,
        )
        by_id = {run.id: run for run in queued}
        placed = sum(1 for p in placements if self._claim(by_id[p.run_id], p))
        with shared.lock:
            shared.waiting = len(placements) < len(queued)
        placed_ids = {p.run_id for p in placements}
        self._explain([run for run in queued if run.id not in placed_ids], views, reserved,
                      in_flight, lab, now)
        return placed > 0

    def _explain(self, waiting: list[Run], views: dict[str, HostView],
                 reserved: dict[tuple[str, int], str], in_flight: set[tuple[str, int]],
                 lab: LabState, now: float) -> None:
        """Give the first waiting runs the scheduler's reason, now and then (a queue of
        thousands is explained from its head: those are the ones that start next)."""
        if not waiting or now - self._explained_at < self._options.reason_every_s:
            return
        self._explained_at = now
        tags = self._tags(now)
        reasons = {}
        for run in waiting[: self._options.reasons_max]:
            if run.reason.startswith("launch refused"):
                continue  # the host's own refusal (and its backoff) says more
            reasons[run.id] = explain(run, list(views.values()), reserved, in_flight,
                                      self._options.policy, host_tags=tags, lab=lab)
        for run_id in self.runstore.set_waiting_reasons(reasons):
            self._notify(run_id)

    def _claim(self, run: Run, placement: Placement) -> bool:
        shared = self._shared
        # Marked launching before the claim, so a reconcile that reads the claimed run
        # can never mistake this launch in progress for one that never reached the host.
        with shared.lock:
            shared.launching.add(run.id)
        won = False
        try:
            won = self.runstore.claim(
                run.id, placement.host, placement.gpu_indices, placement.gpu_uuids
            )
        finally:
            if not won:
                with shared.lock:
                    shared.launching.discard(run.id)
        if not won:
            return False
        claimed = replace(
            run, state=RunState.LAUNCHING, host=placement.host,
            gpus=placement.gpu_indices, gpu_uuids=placement.gpu_uuids,
        )
        log.info("run %s: claimed %s:%s", run.id, placement.host,
                 ",".join(map(str, placement.gpu_indices)))
        self._notify(run.id)
        self._pool.submit(None, functools.partial(self._calls.launch, claimed))
        return True

    def _update_idle(self, views: dict[str, HostView], placed: bool) -> None:
        settled = all(_settled(view) for view in views.values()) and all(
            self.lab.settled(name) for name, view in views.items()
            if view.state is HostState.ONLINE)
        with self._shared.lock:
            pending = bool(self._shared.launching) or bool(
                self._shared.needs_reconcile & self._shared.online
            )
        if settled and not pending and not placed and self._pool.idle():
            self._idle.set()
        else:
            self._idle.clear()

    def _tags(self, now: float) -> dict[str, list[str]]:
        if now - self._tags_read_at > 10.0:
            tags: dict[str, list[str]] = {}
            for name in self._monitor.names():
                try:
                    tags[name] = self._store.host_tags(name)
                except Exception:  # removed meanwhile
                    tags[name] = []
            self._host_tags, self._tags_read_at = tags, now
        return self._host_tags

    def _notify(self, run_id: str) -> None:
        self._bus.publish(RunChanged(run_id))


def _may_use(run: Run, host: str, tags: Iterable[str]) -> bool:
    """Whether ``run`` may go to ``host`` at all (its hosts and host tags)."""
    need = Need.of(run)
    return (not need.hosts or host in need.hosts) and set(need.host_tags) <= set(tags)


def _online(views: dict[str, HostView], name: str) -> bool:
    view = views.get(name)
    return view is not None and view.state is HostState.ONLINE


def _settled(view: HostView) -> bool:
    """Not waiting for a first connect or a first sample."""
    if view.state is HostState.CONNECTING:
        return False
    return not (view.state is HostState.ONLINE and view.sample is None)
