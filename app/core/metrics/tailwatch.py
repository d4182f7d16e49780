"""Which runs' files the hosts' agents tail, and from which offsets (for the Ingestor).

Every launching or running run is watched on its host from the offsets committed in the
store; a run that finished is watched a little longer, until its host was online for
``linger_s`` after the finish was seen and nothing arrived for ``quiet_s`` (its files are
drained), then unwatched. At start the newest finished runs are drained the same way,
so output written while no Labdeck was looking (a network cut, the app closed) still
arrives. The session keeps the watch dict and re-sends it on every reconnect; this module
moves the resume point it holds to what is committed, not merely received, at a modest
rate (the agent keeps its place on a repeated watch: it is ahead of what is committed).
After a gap (a chunk dropped, a failed transaction) the run is unwatched and watched
again from the committed offsets, which makes the agent read the missing part again;
chunks it had sent before that arrive as stale gaps, so this happens at most once per
``resend_s`` until every broken source's data is stored in order again.

Runs are keyed by their id on the host (``Run.host_run_id``: a retry has its own folder),
which is also the id their curves and console are stored under. Watches go through the
monitor (``ClusterMonitor.watch``), which thereby learns which host holds which run and
passes on tail chunks of a run only from that host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.core.console.parse import MetricPattern, compile_patterns
from app.core.hosts.cluster import ClusterMonitor
from app.core.queue.runs import FINISHED, Run
from app.core.queue.runstore import ACTIVE, RunStore
from ssh_backend.states import HostState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    # Keep a finished run watched this long after the finish was seen with its host online.
    linger_s: float = 5.0
    # ... and until nothing arrived for it for this long.
    quiet_s: float = 2.0
    # Move a live run's resume point at most this often (a re-sent watch may make the
    # agent send again what is in flight: it is dropped as a duplicate, but costs).
    rewatch_s: float = 10.0
    # At start, drain at most this many of the newest finished runs.
    drain_max: int = 50
    # At most one forced re-read per run this often (see the module docstring).
    resend_s: float = 2.0


@dataclass(slots=True)
class Watch:
    key: str  # the run's id on its host, and in the metric store
    run_id: str  # the queue's id
    host: str
    patterns: tuple[MetricPattern, ...]
    finished_at: float | None = None  # monotonic time the finish was seen
    sent: dict[str, int] | None = None  # offsets last given to the session
    sent_at: float = 0.0
    online_since: float | None = None
    last_data: float = 0.0
    # Sources with data missing in the store (a dropped chunk, a gap, a failed write).
    broken: set[str] = field(default_factory=set)
    forced_at: float = -1e9


def patterns_of(run: Run) -> tuple[MetricPattern, ...]:
    raw = run.spec.get("metric_patterns") or ()
    try:
        return compile_patterns(str(p) for p in raw)
    except ValueError as exc:  # validated at submit; a store edited by hand lands here
        log.warning("run %s: metric patterns ignored: %s", run.id, exc)
        return ()


@dataclass(slots=True)
class Watches:
    """The watch table; only the Ingestor's writer thread calls in (no lock needed)."""

    runstore: RunStore
    monitor: ClusterMonitor
    offsets: Callable[[str], dict[str, int]]
    options: WatchOptions = field(default_factory=WatchOptions)
    # Only these queue ids (``labdeck logs -f``); None means every run.
    only: frozenset[str] | None = None
    by_key: dict[str, Watch] = field(default_factory=dict)
    drained: set[str] = field(default_factory=set)
    # Runs known to have ended though the store does not say so yet (``logs -f``).
    assumed_finished: set[str] = field(default_factory=set)

    def lookup(self, key: str) -> Watch | None:
        return self.by_key.get(key)

    def data_arrived(self, key: str, now: float) -> None:
        watch = self.by_key.get(key)
        if watch is not None:
            watch.last_data = now

    def resend(self, key: str, sources: set[str]) -> None:
        """Data of ``sources`` of ``key`` is missing in the store: have the agent read
        them again from the committed offsets."""
        watch = self.by_key.get(key)
        if watch is not None:
            watch.broken |= sources

    def broken(self, key: str) -> bool:
        watch = self.by_key.get(key)
        return watch is not None and bool(watch.broken)

    def in_order(self, key: str, sources: set[str]) -> None:
        """Data of ``sources`` of ``key`` was stored in order: nothing of them is missing."""
        watch = self.by_key.get(key)
        if watch is not None:
            watch.broken -= sources

    def _wanted(self) -> dict[str, tuple[Run, bool]]:
        """Run key → (run, finished) for every run that should be watched now."""
        if self.only is not None:
            found = (self.runstore.get(run_id) for run_id in sorted(self.only))
            mine = [r for r in found if r is not None]
            live = [r for r in mine if r.state in ACTIVE]
            ended = [r for r in mine if r.state.finished]
        else:
            live = self.runstore.active()
            ended = self.runstore.list_runs(FINISHED, limit=self.options.drain_max)
        wanted = {run.host_run_id: (run, False) for run in live if run.host}
        for run in ended:
            key = run.host_run_id if run.host else ""
            if key and key not in self.drained:
                wanted.setdefault(key, (run, True))
        for key in [k for k in self.by_key if k not in wanted]:
            # Finished but past the newest few: still drained before it is let go.
            known = self.runstore.get(self.by_key[key].run_id)
            if known is not None and known.state.finished and known.host_run_id == key:
                wanted[key] = (known, True)
        return wanted

    def refresh(self) -> None:
        """Bring the watches in line with the store and the hosts (reads the store)."""
        now = time.monotonic()
        wanted = self._wanted()
        for key in [k for k in self.by_key if k not in wanted]:
            self._drop(self.by_key[key])
        for key, (run, finished) in wanted.items():
            watch = self.by_key.get(key)
            if watch is None:
                assert run.host is not None
                watch = self.by_key[key] = Watch(key, run.id, run.host, patterns_of(run))
            if (finished or key in self.assumed_finished) and watch.finished_at is None:
                watch.finished_at = now
            self._tend(watch, now)

    def stop(self) -> None:
        """Unwatch everything (the app closes; runs go on, the next start resumes)."""
        for watch in list(self.by_key.values()):
            self._drop(watch)

    def _tend(self, watch: Watch, now: float) -> None:
        view = self.monitor.host(watch.host)
        if view is None:  # not monitored (any more): its session went with it
            return
        if view.state is HostState.ONLINE:
            if watch.online_since is None:
                watch.online_since = now
        else:
            watch.online_since = None
        if watch.finished_at is not None and watch.online_since is not None:
            since = max(watch.finished_at, watch.online_since, watch.sent_at)
            if (now - since >= self.options.linger_s
                    and now - watch.last_data >= self.options.quiet_s):
                self.drained.add(watch.key)
                self._drop(watch)
                return
        if watch.broken and now - watch.forced_at >= self.options.resend_s:
            if watch.sent is not None:
                # A fresh watch on the agent starts over.
                self.monitor.unwatch(watch.host, watch.key)
            watch.forced_at = now
            watch.sent = None
        committed: dict[str, int] | None = None
        due = watch.sent is None
        if not due and now - watch.sent_at >= self.options.rewatch_s:
            committed = self.offsets(watch.key)
            due = committed != watch.sent
        if due:
            offsets = committed if committed is not None else self.offsets(watch.key)
            if self.monitor.watch(watch.host, watch.key, offsets):
                watch.sent, watch.sent_at = offsets, now

    def _drop(self, watch: Watch) -> None:
        self.by_key.pop(watch.key, None)
        if watch.sent is not None:
            self.monitor.unwatch(watch.host, watch.key)
