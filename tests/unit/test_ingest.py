"""The Ingestor over a real store and a real ClusterMonitor, with scripted sessions that
deliver tail chunks from a thread of their own: batching, console points from complete
lines only, exactly once across re-deliveries, restarts and store failures, back-pressure,
and the watches (what is watched, from which offsets, and when it is let go)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.events import PointsStored
from app.core.hosts.cluster import ClusterMonitor
from app.core.jobs.jobspec import JobSpec
from app.core.metrics.ingest import LOG, METRICS, IngestOptions, Ingestor
from app.core.metrics.metricstore import MetricStore
from app.core.metrics.tailwatch import WatchOptions
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import MetricPoint, TailChunk
from ssh_backend.states import HostState
from tests.harness.tail_session import TailSession

FAST = IngestOptions(
    batch_s=0.02, refresh_s=0.05,
    watch=WatchOptions(linger_s=0.3, quiet_s=0.2, rewatch_s=0.2),
)


class Rig:
    def __init__(self, root: Path) -> None:
        self.store = Store.open(root / "labdeck.sqlite3")
        self.store.add_host(HostSpec(name="ws1"))
        self.runs = RunStore(self.store)
        self.sessions: dict[str, TailSession] = {}
        self.monitor = ClusterMonitor(self._session)
        self.monitor.set_hosts(self.store.hosts())
        self.monitor.start()
        self.ingestors: list[Ingestor] = []
        self.heard: list[tuple[str, frozenset[str]]] = []

    def _session(self, spec: HostSpec, listener: SessionListener) -> TailSession:
        self.sessions[spec.name] = TailSession(spec, listener)
        return self.sessions[spec.name]

    @property
    def ws1(self) -> TailSession:
        return self.sessions["ws1"]

    def ingestor(self, options: IngestOptions = FAST, only: set[str] | None = None
                 ) -> Ingestor:
        ingestor = Ingestor(self.store, self.monitor, options, only=only)
        ingestor.bus.subscribe(lambda e: self.heard.append((e.run_key, e.kinds)), (PointsStored,))
        ingestor.start()
        self.ingestors.append(ingestor)
        return ingestor

    def running(self, **fields: Any) -> str:
        spec = JobSpec(name="job", argv=("python3", "t.py"), **fields)
        (run_id,) = self.runs.submit([spec.to_dict()], "alice")
        assert self.runs.claim(run_id, "ws1", [0], ["GPU-0"])
        assert self.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING)
        return run_id

    def finish(self, run_id: str) -> None:
        assert self.runs.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED,
                                    exit_code=0, ended_at=time.time())

    def close(self) -> None:
        for ingestor in self.ingestors:
            ingestor.stop()
        self.monitor.stop()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.01)


def console(run_id: str, start: int, data: bytes, **kw: Any) -> TailChunk:
    return TailChunk(run_id, "output.log", 7, start, start + len(data), data, **kw)


def points_chunk(run_id: str, start: int, end: int, *pts: MetricPoint) -> TailChunk:
    return TailChunk(run_id, "metrics.jsonl", 8, start, end, points=pts)


def series(ms: MetricStore, run_id: str) -> dict[str, list[tuple[int | None, float]]]:
    out = {}
    for info in ms.series(run_id):
        pts = ms.points(run_id, info.name)
        steps = [None if s != s else int(s) for s in pts.step.tolist()]
        out[info.name] = list(zip(steps, pts.value.tolist(), strict=True))
    return out


def test_a_running_run_is_watched_and_its_chunks_stored_with_console_points(rig: Rig) -> None:
    run_id = rig.running()
    ingestor = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) == {}, what="the first watch")
    rig.ws1.tail(
        console(run_id, 0, b"starting\nstep 1 loss=0.5\nstep 2 lo"),
        points_chunk(run_id, 0, 40, MetricPoint("acc", 1, 100.0, 0.25)),
        TailChunk(run_id, "metrics.jsonl", 8, 40, 60, params={"lr": 0.1}),
    )
    assert ingestor.wait_idle(5)
    ms = ingestor.metricstore
    assert ms.log_bytes(run_id) == b"starting\nstep 1 loss=0.5\nstep 2 lo"
    assert series(ms, run_id) == {"acc": [(1, 0.25)], "loss": [(1, 0.5)]}
    assert ms.params(run_id) == {"lr": 0.1}
    assert ms.offsets(run_id) == {"output.log": 34, "metrics.jsonl": 60}
    assert (run_id, frozenset({LOG, METRICS})) in rig.heard
    # The partial line completes with the next chunk; nothing is counted twice.
    rig.ws1.tail(console(run_id, 34, b"ss=0.25\n"))
    assert ingestor.wait_idle(5)
    assert series(ms, run_id)["loss"] == [(1, 0.5), (2, 0.25)]
    # The committed offsets become the resume point the session holds.
    wait_for(lambda: rig.ws1.last_watch(run_id) == {"output.log": 42, "metrics.jsonl": 60},
             what="the resume point to move")


def test_re_delivered_chunks_are_stored_once(rig: Rig) -> None:
    run_id = rig.running()
    ingestor = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    first = console(run_id, 0, b"loss=1\nloss=2\n")
    pts = points_chunk(run_id, 0, 10, MetricPoint("acc", 3, 1.0, 0.5))
    rig.ws1.tail(first, pts)
    assert ingestor.wait_idle(5)
    # A reconnect resumes from an older resume point: the agent sends some of it again.
    rig.ws1.tail(first, pts, console(run_id, 7, b"loss=2\nloss=3\n"))
    assert ingestor.wait_idle(5)
    ms = ingestor.metricstore
    assert ms.log_bytes(run_id) == b"loss=1\nloss=2\nloss=3\n"
    assert series(ms, run_id) == {"acc": [(3, 0.5)], "loss": [(None, 1.0), (None, 2.0),
                                                             (None, 3.0)]}


def test_a_restart_continues_the_unfinished_line_from_the_stored_console(rig: Rig) -> None:
    run_id = rig.running()
    first = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    rig.ws1.tail(console(run_id, 0, b"step 1 loss=1\nstep 2 lo"))
    assert first.wait_idle(5)
    first.stop()
    second = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) == {"output.log": 23}, what="resume point")
    rig.ws1.tail(console(run_id, 23, b"ss=2\nstep 3 loss=3\n"))
    assert second.wait_idle(5)
    assert series(second.metricstore, run_id) == {"loss": [(1, 1.0), (2, 2.0), (3, 3.0)]}


def test_a_failed_transaction_is_parsed_again_once_stored(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = rig.running()
    ingestor = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    rig.ws1.tail(console(run_id, 0, b"loss=1\nlo"))
    assert ingestor.wait_idle(5)
    real = MetricStore.ingest
    failures = []

    def flaky(self: MetricStore, chunks: Any, console_points: Any = None) -> Any:
        if not failures:
            failures.append(1)
            console_points(run_id, b"ss=2\n")  # parsed, then the disk fills up
            raise OSError("disk full")
        return real(self, chunks, console_points)

    monkeypatch.setattr(MetricStore, "ingest", flaky)
    rig.ws1.tail(console(run_id, 9, b"ss=2\n"))
    assert ingestor.wait_idle(5)
    assert failures and ingestor.metricstore.offsets(run_id) == {"output.log": 9}
    # Unwatched and watched again from the committed offset: the agent reads it again.
    wait_for(lambda: rig.ws1.unwatches == [run_id], what="the unwatch")
    wait_for(lambda: rig.ws1.last_watch(run_id) == {"output.log": 9}, what="a re-watch")
    rig.ws1.tail(console(run_id, 9, b"ss=2\n"))
    assert ingestor.wait_idle(5)
    assert series(ingestor.metricstore, run_id) == {"loss": [(None, 1.0), (None, 2.0)]}


def test_a_full_queue_drops_and_the_gap_is_sent_again(rig: Rig) -> None:
    run_id = rig.running()
    options = IngestOptions(batch_s=0.02, refresh_s=0.05, max_pending_bytes=4096,
                            full_wait_s=0.05, watch=FAST.watch)
    ingestor = rig.ingestor(options)
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    lines = [b"step %d loss=%d\n" % (i, i) for i in range(400)]
    data = b"".join(lines)
    chunks = []
    pos = 0
    for i in range(0, len(lines), 10):
        part = b"".join(lines[i : i + 10])
        chunks.append(console(run_id, pos, part))
        pos += len(part)
    # The writer is held up (another writer has the store), so the queue fills.
    with rig.store.transaction():
        rig.ws1.tail(*chunks)
    assert ingestor.wait_idle(5)
    ms = ingestor.metricstore
    stored = ms.offsets(run_id)["output.log"]
    assert stored < len(data)  # some were dropped
    # What the agent does on unwatch + watch: send again from the committed offset.
    wait_for(lambda: run_id in rig.ws1.unwatches, what="the unwatch")
    wait_for(lambda: rig.ws1.last_watch(run_id) == {"output.log": stored}, what="re-watch")
    rig.ws1.tail(*[c for c in chunks if c.end > stored])
    assert ingestor.wait_idle(5)
    assert ms.log_bytes(run_id) == data
    assert series(ms, run_id) == {"loss": [(i, float(i)) for i in range(400)]}


def test_job_patterns_read_the_console(rig: Rig) -> None:
    run_id = rig.running(metric_patterns=("(?#series=val)validation: (?P<value>\\S+)",))
    ingestor = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    rig.ws1.tail(console(run_id, 0, b"validation: 0.75\nloss=1\n"))
    assert ingestor.wait_idle(5)
    assert series(ingestor.metricstore, run_id) == {"loss": [(None, 1.0)],
                                                     "val": [(None, 0.75)]}


def test_a_finished_run_is_drained_then_unwatched_and_offline_hosts_wait(rig: Rig) -> None:
    run_id = rig.running()
    ingestor = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    rig.ws1.go(HostState.OFFLINE)
    rig.finish(run_id)
    time.sleep(0.8)  # well past linger + quiet: still watched, the host was away
    assert rig.ws1.unwatches == [] and not ingestor.drained(run_id)
    rig.ws1.go(HostState.ONLINE)
    rig.ws1.tail(console(run_id, 0, b"last words\n"))
    wait_for(lambda: ingestor.drained(run_id), what="the drain")
    assert rig.ws1.unwatches == [run_id]
    assert ingestor.metricstore.log_bytes(run_id) == b"last words\n"


def test_at_start_recently_finished_runs_are_drained_and_retries_have_their_own_id(
    rig: Rig,
) -> None:
    done = rig.running()
    rig.finish(done)
    retried = rig.running()
    assert rig.runs.transition(retried, RunState.RUNNING, RunState.LOST)
    assert rig.runs.transition(retried, RunState.LOST, RunState.QUEUED)
    assert rig.runs.claim(retried, "ws1", [1], ["GPU-1"])
    ingestor = rig.ingestor()
    wait_for(lambda: rig.ws1.last_watch(f"{retried}-a1") == {}, what="the retry's watch")
    wait_for(lambda: ingestor.drained(done), what="the finished run's drain")
    assert rig.ws1.last_watch(done) == {}
    assert rig.ws1.last_watch(retried) is None  # the lost attempt: nothing to wait for


def test_stop_stores_what_was_received_and_unwatches(rig: Rig) -> None:
    run_id = rig.running()
    ingestor = rig.ingestor(IngestOptions(batch_s=0.5, refresh_s=0.05, watch=FAST.watch))
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    rig.ws1.tail(console(run_id, 0, b"loss=1\n"))
    ingestor.stop()
    assert ingestor.metricstore.log_bytes(run_id) == b"loss=1\n"
    assert rig.ws1.unwatches == [run_id]


def test_following_one_run_watches_only_it_even_long_after_it_finished(rig: Rig) -> None:
    old = rig.running()
    rig.finish(old)
    other = rig.running()
    quick = IngestOptions(batch_s=0.02, refresh_s=0.05,
                          watch=WatchOptions(linger_s=0.3, quiet_s=0.2, drain_max=0))
    everything = rig.ingestor(quick)
    following = rig.ingestor(quick, only={old})
    wait_for(lambda: following.drained(old), what="the followed run's drain")
    assert not everything.drained(old)  # past drain_max: not drained at start
    with rig.ws1.lock:
        watched = {run_id for run_id, _offsets in rig.ws1.watches}
    assert watched == {old, other}  # other: by the unrestricted ingestor only
    everything.stop()
    following.stop()
    assert rig.ws1.unwatches.count(other) == 1


def test_a_dropped_last_console_chunk_is_read_again_while_metrics_flow_on(rig: Rig) -> None:
    run_id = rig.running()
    options = IngestOptions(batch_s=0.02, refresh_s=0.05, max_pending_bytes=4096,
                            full_wait_s=0.1, watch=FAST.watch)
    ingestor = rig.ingestor(options)
    wait_for(lambda: rig.ws1.last_watch(run_id) is not None, what="watch")
    parts = [(b"loss=%d " % i) * 375 + b"\n" for i in range(3)]  # ~3 kB each
    chunks = [console(run_id, sum(map(len, parts[:i])), part) for i, part in enumerate(parts)]
    with rig.store.transaction():
        rig.ws1.tail(*chunks)  # the third does not fit while the writer waits: dropped
        rig.ws1.tail(points_chunk(run_id, 0, 30, MetricPoint("acc", 1, 1.0, 0.5)))
    assert ingestor.wait_idle(5)
    ms = ingestor.metricstore
    assert ms.offsets(run_id) == {"output.log": len(parts[0]) + len(parts[1]),
                                  "metrics.jsonl": 30}
    # The metrics arrived in order, but the console is still missing its end: re-read.
    wait_for(lambda: rig.ws1.unwatches == [run_id], what="the unwatch")
    wait_for(lambda: rig.ws1.last_watch(run_id) == ms.offsets(run_id), what="the re-watch")
    rig.ws1.tail(chunks[2])
    assert ingestor.wait_idle(5)
    assert ms.log_bytes(run_id) == b"".join(parts)
    time.sleep(0.5)  # repaired: no further re-read
    assert rig.ws1.unwatches == [run_id]
