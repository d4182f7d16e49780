"""Runs another process changes (``labdeck serve`` holding the queue, a ``labdeck
cancel`` from a terminal) reach this Lab's bus as RunChanged, as its own do: the run
window and the runs table hear of them without polling."""

from __future__ import annotations

import threading
from pathlib import Path

from app.core.events import RunChanged
from app.core.hosts.cluster import ClusterMonitor
from app.core.jobs.jobspec import JobSpec
from app.core.lab import Lab
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.hostspec import HostSpec


def _no_sessions(spec: HostSpec, listener: object) -> object:
    raise AssertionError("no host in this test")


def test_a_run_changed_by_another_process_is_published(tmp_path: Path) -> None:
    path = tmp_path / "labdeck.sqlite3"
    with Store.open(path) as store:
        lab = Lab(store, ClusterMonitor(_no_sessions), follow_store=True)  # type: ignore[arg-type]
        heard: list[str] = []
        got = threading.Event()

        def on_event(event: object) -> None:
            assert isinstance(event, RunChanged)
            heard.append(event.run_id)
            got.set()

        lab.bus.subscribe(on_event, types=(RunChanged,))
        lab.start(dispatch=False, ingest=False)
        try:
            with Store.open(path) as other:  # another process's connection
                spec = JobSpec(name="t", argv=("python3", "-c", "pass"))
                (run_id,) = RunStore(other).submit([spec.to_dict()], "alice")
            assert got.wait(10), "no RunChanged for a run submitted elsewhere"
            assert run_id in heard
        finally:
            lab.stop()
