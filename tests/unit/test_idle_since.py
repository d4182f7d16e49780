"""How long a GPU has read 0 %: the monitor's clock behind "held but idle for N min"."""

from __future__ import annotations

import time

from app.core.hosts.cluster import ClusterMonitor
from ssh_backend.hostspec import HostSpec
from tests.unit.dispatch_fakes import FakeSession


def test_an_idle_stretch_starts_at_the_first_idle_sample_and_ends_with_any_load() -> None:
    sessions: dict[str, FakeSession] = {}

    def factory(spec: HostSpec, listener: object) -> FakeSession:
        sessions[spec.name] = FakeSession(spec, listener)  # type: ignore[arg-type]
        return sessions[spec.name]

    monitor = ClusterMonitor(factory)  # type: ignore[arg-type]
    monitor.start()
    try:
        monitor.add_host(HostSpec(name="box"))
        fake = sessions["box"]
        before = time.time()
        fake.util = {0: 50.0, 1: 0.0, 2: None}
        fake.sample(gpus=3)
        first = monitor.idle_since("box", 1)
        assert first is not None and first >= before
        assert monitor.idle_since("box", 0) is None  # busy
        assert monitor.idle_since("box", 2) is None  # load unknown: never called idle
        fake.util = {0: 0.0, 1: 0.0, 2: None}
        fake.sample(gpus=3)
        assert monitor.idle_since("box", 1) == first  # the stretch goes on
        assert monitor.idle_since("box", 0) is not None
        fake.util = {0: 0.0, 1: 3.0, 2: None}
        fake.sample(gpus=3)
        assert monitor.idle_since("box", 1) is None  # any load ends it
        monitor.remove_host("box")
        assert monitor.idle_since("box", 0) is None
    finally:
        monitor.stop()
