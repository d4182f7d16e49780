"""The Ingestor: tail chunks from the hosts' agents into the metric store, one writer thread.

Chunks arrive on the sessions' threads (``monitor.add_tail_listener``), each only from
the host its run was placed on (the monitor drops the others: ``ClusterMonitor.watch``),
and only go into a queue there. The writer thread takes them in batches (every
``batch_s`` or ``batch_points`` points, whichever comes first), reads metric points out of
the console lines they complete, and stores everything with ``MetricStore.ingest`` in one
transaction with the new tail offsets. Then it publishes a ``PointsStored`` per run that
got new data on the monitor's bus. Between batches it keeps the agents' watches in line
with the runs (``app.core.metrics.tailwatch``), and at once when the dispatcher publishes a
``RunChanged`` (a launch or a finish).

Console parsing works on complete lines only. The unfinished last line of each run lives
in a ``ConsoleSplitter`` fed with exactly the bytes the store appended; after a restart it
is rebuilt from the stored console's tail, so no line is counted twice or missed.

Memory stays bounded: at most ``max_pending_bytes`` wait in the queue. When it is full a
session thread waits briefly (back-pressure through SSH flow control), then drops the
chunk: the next chunk of that file is a gap, and the run is re-watched from the committed
offset, so the agent sends the dropped part again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from app.core.console.parse import MAX_LINE_BYTES, ConsoleSplitter, parse_line
from app.core.events import LOG, METRICS, Event, PointsStored, RunChanged
from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.metricstore import IngestResult, MetricStore
from app.core.metrics.tailwatch import Watches, WatchOptions
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.protocol import MetricPoint, TailChunk

log = logging.getLogger(__name__)

__all__ = ["LOG", "METRICS", "IngestOptions", "Ingestor"]


@dataclass(frozen=True, slots=True)
class IngestOptions:
    batch_s: float = 0.1
    batch_points: int = 5000
    # A batch stops growing at this many console bytes (one transaction stays short).
    batch_bytes: int = 8 * 1024 * 1024
    max_pending_bytes: int = 32 * 1024 * 1024
    # How long a session thread waits for room in a full queue before dropping a chunk.
    full_wait_s: float = 2.0
    # How often the watches are brought in line with the store and the hosts.
    refresh_s: float = 1.0
    watch: WatchOptions = field(default_factory=WatchOptions)


def _sources(batch: list[tuple[str, TailChunk]]) -> dict[str, set[str]]:
    """Run → the sources that have chunks in ``batch``."""
    return {key: set(ends) for key, ends in _last_ends(batch).items()}


def _last_ends(batch: list[tuple[str, TailChunk]]) -> dict[str, dict[str, int]]:
    """Run → source → where the last chunk of that source in ``batch`` ends."""
    out: dict[str, dict[str, int]] = {}
    for _host, chunk in batch:
        out.setdefault(chunk.run_id, {})[chunk.source] = chunk.end
    return out


def _weight(chunk: TailChunk) -> int:
    """Memory a queued chunk holds, roughly: its bytes, ~64 bytes a point."""
    return len(chunk.data) + 64 * len(chunk.points) + 256


class Ingestor:
    """See the module docstring. ``start()``/``stop()``; ``PointsStored`` events name the
    run by its id on its host (its metric store id) and are published on the writer
    thread (``bus``, the monitor's)."""

    def __init__(
        self,
        store: Store,
        monitor: ClusterMonitor,
        options: IngestOptions | None = None,
        *,
        only: set[str] | None = None,
    ) -> None:
        self._options = options or IngestOptions()
        self.metricstore = MetricStore(store)
        self._monitor = monitor
        self.bus = monitor.bus
        self._watches = Watches(
            RunStore(store), monitor, self.metricstore.offsets, self._options.watch,
            frozenset(only) if only is not None else None,
        )
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, TailChunk]] = deque()
        self._pending_bytes = 0
        self._pending_points = 0
        self._busy = False
        self._dropped: set[tuple[str, str]] = set()  # (run, source) of dropped chunks
        # Per run: the console splitter and the stored console size it has seen.
        self._splitters: dict[str, tuple[ConsoleSplitter, int]] = {}
        # Run → series parsed from its console in the commit under way (for PointsStored).
        self._console_series: dict[str, set[str]] = {}
        self._assumed: set[str] = set()
        self._drained: set[str] = set()
        # Runs watched as of the last look at the runs, and how many looks there were.
        self._watched = 0
        self._refreshes = 0
        self.batches_stored = 0  # grows with every stored batch: progress for waiters
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_now = threading.Event()
        # One bound method, so that remove_tail_listener finds it by identity.
        self._tail_listener = self._on_tail

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._monitor.add_tail_listener(self._tail_listener)
        self.bus.subscribe(self._on_run_changed, (RunChanged,))
        self._thread = threading.Thread(target=self._run, name="labdeck-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Store what was received, unwatch, stop the thread. Runs go on on their hosts;
        the next start resumes from the committed offsets."""
        self._stop.set()
        self._monitor.remove_tail_listener(self._tail_listener)
        self.bus.unsubscribe(self._on_run_changed)
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def refresh(self) -> None:
        """Look at the runs now (after a launch, say) instead of at the next tick."""
        self._refresh_now.set()
        with self._cond:
            self._cond.notify_all()

    def _on_run_changed(self, event: Event) -> None:
        """A launch or a finish (the dispatcher's thread): look at the runs now."""
        self.refresh()

    def assume_finished(self, run_id: str) -> None:
        """Treat ``run_id`` (its id on the host) as ended: drain its files, then unwatch."""
        with self._cond:
            self._assumed.add(run_id)
        self.refresh()

    def drained(self, run_id: str) -> bool:
        """Whether the ended run ``run_id`` was drained and unwatched by this Ingestor."""
        with self._cond:
            return run_id in self._drained

    def wait_drained(self, timeout: float) -> bool:
        """Wait until nothing is watched any more, as of a look at the runs taken after
        this call: every run had ended and its files were drained (``serve --until-done``
        exits only then). False after ``timeout`` (a host offline) or once stopped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = self._refreshes
        self.refresh()
        with self._cond:
            while self._refreshes <= seen or self._watched:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or self._thread is None:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every chunk received so far is stored (for tests and the CLI)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- session threads -------------------------------------------------------------
    def _on_tail(self, host: str, chunk: TailChunk) -> None:
        weight = _weight(chunk)
        deadline = time.monotonic() + self._options.full_wait_s
        with self._cond:
            while (self._pending_bytes + weight > self._options.max_pending_bytes
                   and self._queue and not self._stop.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    # Dropped: the next chunk of this file is a gap and triggers a re-watch.
                    self._dropped.add((chunk.run_id, chunk.source))
                    return
                self._cond.wait(left)
            if self._stop.is_set():
                return
            self._queue.append((host, chunk))
            self._pending_bytes += weight
            self._pending_points += len(chunk.points)
            self._cond.notify_all()

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        next_refresh = 0.0
        try:
            while True:
                stopping = self._stop.is_set()
                batch = self._take(next_refresh)
                if batch:
                    self._commit(batch)
                now = time.monotonic()
                if stopping and not batch:
                    break
                if not stopping and (now >= next_refresh or self._refresh_now.is_set()):
                    self._refresh_now.clear()
                    next_refresh = now + self._options.refresh_s
                    self._refresh()
        finally:
            try:
                self._watches.stop()
            finally:
                with self._cond:
                    self._busy = False
                    self._queue.clear()
                    self._pending_bytes = self._pending_points = 0
                    self._cond.notify_all()

    def _take(self, next_refresh: float) -> list[tuple[str, TailChunk]]:
        """The next batch, or [] when it is time to refresh (or to stop)."""
        opts = self._options
        with self._cond:
            while not self._queue:
                if self._stop.is_set() or self._refresh_now.is_set():
                    return []
                left = next_refresh - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            # Let a burst gather: a batch per transaction, not a transaction per chunk.
            until = time.monotonic() + opts.batch_s
            while (not self._stop.is_set() and time.monotonic() < until
                   and self._pending_points < opts.batch_points
                   and self._pending_bytes < opts.batch_bytes):
                self._cond.wait(max(0.0, until - time.monotonic()))
            batch: list[tuple[str, TailChunk]] = []
            points = size = 0
            while self._queue and points < opts.batch_points and size < opts.batch_bytes:
                host, chunk = self._queue.popleft()
                batch.append((host, chunk))
                points += len(chunk.points)
                size += len(chunk.data)
                self._pending_bytes -= _weight(chunk)
                self._pending_points -= len(chunk.points)
            self._busy = True
            self._cond.notify_all()  # room for waiting session threads
            return batch

    def _commit(self, batch: list[tuple[str, TailChunk]]) -> None:
        keys = {chunk.run_id for _host, chunk in batch}
        now = time.time()
        self._console_series = {}
        try:
            result = self.metricstore.ingest(
                batch, console_points=lambda key, data: self._console_points(key, data, now)
            )
        except Exception:
            # The store busy past its timeout, a full disk: nothing was stored. The
            # splitters are rebuilt from the stored console, and the runs re-watched
            # from what is committed (the agent sends the rest again).
            log.exception("storing %d tail chunks failed", len(batch))
            for key in keys:
                self._splitters.pop(key, None)
            for key, sources in _sources(batch).items():
                self._watches.resend(key, sources)
            self._stop.wait(0.5)
            return
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        self._after_commit(result, batch)

    def _after_commit(self, result: IngestResult, batch: list[tuple[str, TailChunk]]) -> None:
        keys = {chunk.run_id for _host, chunk in batch}
        mono = time.monotonic()
        self.batches_stored += 1
        for key in keys:
            self._watches.data_arrived(key, mono)
        with self._cond:
            dropped, self._dropped = self._dropped, set()
        broken: dict[str, set[str]] = {}
        for key, source in dropped | {(gap.run_id, gap.source) for gap in result.gaps}:
            broken.setdefault(key, set()).add(source)
        for key, ends in _last_ends(batch).items():
            if self._watches.broken(key):
                # Repaired when the store holds all that arrived: not a stale gap, nor a
                # duplicate of data from before the hole.
                stored = self.metricstore.offsets(key)
                repaired = {source for source, end in ends.items()
                            if stored.get(source, 0) >= end} - broken.get(key, set())
                self._watches.in_order(key, repaired)
        for key, sources in broken.items():
            self._watches.resend(key, sources)
        if broken:
            self._refresh_now.set()
        for run_id, source, text in result.warnings:
            log.warning("run %s, %s: %s", run_id, source, text)
        self._publish(result, batch)

    def _publish(self, result: IngestResult, batch: list[tuple[str, TailChunk]]) -> None:
        """One ``PointsStored`` per run with new data in this commit."""
        series: dict[str, set[str]] = self._console_series
        for _host, chunk in batch:
            if chunk.points and chunk.run_id in result.metric_runs:
                series.setdefault(chunk.run_id, set()).update(p.series for p in chunk.points)
        self._console_series = {}
        for run_id in sorted(result.log_runs | result.metric_runs):
            kinds = frozenset(
                ([LOG] if run_id in result.log_runs else [])
                + ([METRICS] if run_id in result.metric_runs else [])
            )
            names = frozenset(series.get(run_id, ())) if METRICS in kinds else frozenset()
            self.bus.publish(PointsStored(run_id, kinds, names))

    def _console_points(self, key: str, data: bytes, wall: float) -> list[MetricPoint]:
        """Called inside the store's transaction with the console bytes it appends."""
        size = self.metricstore.log_size(key)
        before = size - len(data)
        known = self._splitters.get(key)
        # Rebuilt when new here, or when another Labdeck on this store appended meanwhile.
        if known is not None and known[1] == before:
            splitter = known[0]
        else:
            splitter = self._resume_splitter(key, before)
        self._splitters[key] = (splitter, size)
        watch = self._watches.lookup(key)
        patterns = watch.patterns if watch is not None else ()
        points: list[MetricPoint] = []
        for line in splitter.feed(data):
            for series, step, value in parse_line(line, patterns):
                points.append(MetricPoint(series, step, wall, value))
        if points:
            self._console_series.setdefault(key, set()).update(p.series for p in points)
        return points

    def _resume_splitter(self, key: str, before: int) -> ConsoleSplitter:
        """The splitter after the first ``before`` bytes of the stored console."""
        start = max(0, before - MAX_LINE_BYTES - 2)
        tail = self.metricstore.log_bytes(key, start, before) if before > 0 else b""
        return ConsoleSplitter.from_log_tail(tail, at_file_start=start == 0)

    def _refresh(self) -> None:
        with self._cond:
            self._watches.assumed_finished |= self._assumed
        try:
            self._watches.refresh()
        except Exception:
            log.exception("updating the tail watches failed")
        with self._cond:
            self._drained = set(self._watches.drained)
            self._watched = len(self._watches.by_key)
            self._refreshes += 1
            self._cond.notify_all()
        for key in [k for k in self._splitters if self._watches.lookup(k) is None]:
            del self._splitters[key]  # rebuilt from the stored console if it comes back
