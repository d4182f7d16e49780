"""A host writes only into the runs Labdeck placed on it: tail chunks from any other host,
for another host's run or for run ids nobody placed, are never stored.

A real store, a real ClusterMonitor and a real Ingestor; two scripted hosts deliver chunks
from threads of their own, the way sessions do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.hosts.cluster import ClusterMonitor
from app.core.jobs.jobspec import JobSpec
from app.core.metrics.ingest import IngestOptions, Ingestor
from app.core.metrics.tailwatch import WatchOptions
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.run_rows import run_rows, stored_runs
from tests.harness.tail_session import TailSession

FAST = IngestOptions(batch_s=0.02, refresh_s=0.05,
                     watch=WatchOptions(linger_s=0.3, quiet_s=0.2, rewatch_s=0.2))


class Lab:
    def __init__(self, root: Path) -> None:
        self.store = Store.open(root / "labdeck.sqlite3")
        for name in ("ws-a", "ws-b"):
            self.store.add_host(HostSpec(name=name))
        self.runs = RunStore(self.store)
        self.hosts: dict[str, TailSession] = {}
        self.monitor = ClusterMonitor(self._session)
        self.monitor.set_hosts(self.store.hosts())
        self.monitor.start()
        self.ingestor = Ingestor(self.store, self.monitor, FAST)

    def _session(self, spec: HostSpec, listener: SessionListener) -> TailSession:
        self.hosts[spec.name] = TailSession(spec, listener)
        return self.hosts[spec.name]

    def running_on(self, host: str) -> str:
        spec = JobSpec(name="job", argv=("python3", "t.py"))
        (run_id,) = self.runs.submit([spec.to_dict()], "alice")
        assert self.runs.claim(run_id, host, [0], ["GPU-0"])
        assert self.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING)
        return run_id

    def rows(self, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
        return run_rows(self.store, run_id)

    def stored_runs(self) -> set[str]:
        return stored_runs(self.store)

    def close(self) -> None:
        self.ingestor.stop()
        self.monitor.stop()
        self.store.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    made = Lab(tmp_path)
    yield made
    made.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.01)


def forged(run_id: str, start: int) -> list[TailChunk]:
    """What a compromised host sends for ``run_id``: console lines, points, parameters."""
    line = b"step 9 loss=-1 forged\n"
    return [
        TailChunk(run_id, "output.log", 7, start, start + len(line), line),
        TailChunk(run_id, "output.log", 7, 0, 6, b"owned\n", reset=True),
        TailChunk(run_id, "metrics.jsonl", 8, 0, 50, points=(
            MetricPoint("loss", 9, 1.0, -1.0), MetricPoint("forged/series", 1, 1.0, 6.66))),
        TailChunk(run_id, "metrics.jsonl", 8, 0, 60, params={"lr": "forged"}, reset=True),
        TailChunk(run_id, "tb/events.out.tfevents.1", 9, 0, 10,
                  points=(MetricPoint("tb/loss", 1, 1.0, 0.0),)),
    ]


def test_a_host_cannot_write_into_another_hosts_run_nor_make_up_runs(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    mine = lab.running_on("ws-a")
    lab.ingestor.start()
    a, b = lab.hosts["ws-a"], lab.hosts["ws-b"]
    wait_for(lambda: mine in a.watched, what="the watch on ws-a")
    a.tail(TailChunk(mine, "output.log", 7, 0, 16, b"step 1 loss=0.5\n"),
           TailChunk(mine, "metrics.jsonl", 8, 0, 40, points=(MetricPoint("acc", 1, 1.0, 0.9),),
                     params={"lr": 0.1}))
    assert lab.ingestor.wait_idle(5)
    before = lab.rows(mine)
    assert before["log_chunks"] and before["metric_series"] and before["run_params"]

    made_up = [f"r{i:04d}zz" for i in range(200)]
    with caplog.at_level(logging.WARNING):
        b.tail(*forged(mine, 16))
        for run_id in made_up:
            b.tail(*forged(run_id, 0))
        # Even the real id of ws-a's run, said by ws-a's neighbour, is not ws-a's.
        b.tail(*forged(mine, 0))
        assert lab.ingestor.wait_idle(5)
        time.sleep(0.3)  # several refreshes and batches: nothing arrives late either
        assert lab.ingestor.wait_idle(5)

    assert lab.rows(mine) == before
    assert lab.stored_runs() == {mine}
    ms = lab.ingestor.metricstore
    assert ms.log_bytes(mine) == b"step 1 loss=0.5\n"
    assert [s.name for s in ms.series(mine)] == ["acc", "loss"]
    assert ms.params(mine) == {"lr": 0.1}
    # Said, naming the host, and not once per chunk.
    said = [r.getMessage() for r in caplog.records if "ws-b" in r.getMessage()]
    assert 1 <= len(said) <= 2, said
    assert "did not place" in said[0]
    # ws-a keeps writing its own run.
    a.tail(TailChunk(mine, "output.log", 7, 16, 32, b"step 2 loss=0.4\n"))
    assert lab.ingestor.wait_idle(5)
    assert ms.log_bytes(mine) == b"step 1 loss=0.5\nstep 2 loss=0.4\n"


def test_chunks_of_a_host_s_own_run_still_arrive_after_the_run_moved_on(lab: Lab) -> None:
    """A retry runs elsewhere under its own id: the first attempt's late output still
    comes only from the first host, and the second attempt's only from the second."""
    first = lab.running_on("ws-a")
    lab.ingestor.start()
    a, b = lab.hosts["ws-a"], lab.hosts["ws-b"]
    wait_for(lambda: first in a.watched, what="the watch on ws-a")
    assert lab.runs.transition(first, RunState.RUNNING, RunState.LOST)
    assert lab.runs.transition(first, RunState.LOST, RunState.QUEUED)
    assert lab.runs.claim(first, "ws-b", [0], ["GPU-0"])
    retry = f"{first}-a1"
    wait_for(lambda: retry in b.watched, what="the retry's watch on ws-b")
    a.tail(TailChunk(first, "output.log", 7, 0, 5, b"late\n"))
    b.tail(TailChunk(first, "output.log", 7, 5, 11, b"forged"),
           TailChunk(retry, "output.log", 7, 0, 6, b"retry\n"))
    a.tail(TailChunk(retry, "output.log", 7, 6, 12, b"forged"))
    assert lab.ingestor.wait_idle(5)
    assert lab.ingestor.metricstore.log_bytes(first) == b"late\n"
    assert lab.ingestor.metricstore.log_bytes(retry) == b"retry\n"
