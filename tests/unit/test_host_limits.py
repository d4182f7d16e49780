"""Bounds on what a host may announce (ssh_backend.limits): decoding keeps the first N of
every list and clips text, the host's view says what was cut, and a run keeps a bounded
number of metric series with bounded names."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.metricstore import MetricStore
from app.core.store import Store
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.limits import (
    MAX_GPUS,
    MAX_NAME_CHARS,
    MAX_POINTS_PER_CHUNK,
    MAX_PROCESSES,
    MAX_SERIES_NAME_CHARS,
    MAX_SERIES_PER_RUN,
)
from ssh_backend.protocol import Hello, MetricPoint, Sample, TailChunk, decode
from ssh_backend.states import HostState

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import wire  # noqa: E402

HTML = "<img src=/dev/zero>"
GPUS_CUT = f"host announced 1000 GPUs; showing the first {MAX_GPUS}"


def line(message: dict[str, object]) -> bytes:
    """``message`` as JSON with every non-ASCII character escaped, so that a lone
    surrogate arrives as one (the agent's own encoder would have replaced it)."""
    return json.dumps(message).encode() + b"\n"


def hello_line(gpus: int, name: str = "NVIDIA H100") -> bytes:
    return line(wire.hello("v1", "gpu1", "b00t", "nvml", "NVML", False,
                           [wire.gpu_static(i, f"GPU-{i}", name, 81559, 700)
                            for i in range(gpus)]))


def sample_line(gpus: int, processes: int = 1, first: int = 0) -> bytes:
    procs = [wire.gpu_process(100 + p, "ana", "python3 train.py", 10.0)
             for p in range(processes)]
    return wire.encode(wire.sample(1, 1.7e9, [
        wire.gpu_reading(first + i, f"GPU-{first + i}", 50.0, 1.0, 2.0, processes=procs)
        for i in range(gpus)]))


def test_a_host_announcing_1000_gpus_keeps_the_first_few_and_says_so() -> None:
    hello = decode(hello_line(1000))
    assert isinstance(hello, Hello)
    assert [g.index for g in hello.gpus] == list(range(MAX_GPUS))
    assert hello.cut == GPUS_CUT
    sample = decode(sample_line(1000, processes=3))
    assert isinstance(sample, Sample) and len(sample.gpus) == MAX_GPUS
    assert sample.cut == GPUS_CUT
    crowded = decode(sample_line(2, processes=500))
    assert isinstance(crowded, Sample)
    assert [len(g.processes) for g in crowded.gpus] == [MAX_PROCESSES] * 2
    assert crowded.cut == "host announced 500 processes on one GPU; showing the first 64"
    normal = decode(sample_line(8, processes=2))
    assert isinstance(normal, Sample) and normal.cut == "" and len(normal.gpus) == 8


def test_text_from_a_host_is_clipped_and_shows_its_control_characters() -> None:
    hello = decode(hello_line(1, name=HTML + "\x1b[2J\u202e\ud800" + "x" * 100_000))
    assert isinstance(hello, Hello)
    name = hello.gpus[0].name
    assert len(name) == MAX_NAME_CHARS and name.endswith("…")
    assert name.startswith(HTML + "\ufffd[2J\ufffd\ufffdxxx")  # HTML stays text
    name.encode("utf-8")  # no lone surrogate left: it can be stored and shown
    proc = wire.gpu_process(1, "bob\nroot", "rm -rf /\r" + "y" * 5000, 1.0)
    sample = decode(line(wire.sample(1, 1.0, [wire.gpu_reading(0, "u", processes=[proc])])))
    assert isinstance(sample, Sample)
    got = sample.gpus[0].processes[0]
    assert got.user == "bob\ufffdroot"
    assert got.command is not None and got.command.startswith("rm -rf /\ufffdyyy")
    assert len(got.command) == 256


def test_a_chunk_keeps_a_bounded_number_of_points_and_parameters() -> None:
    points = [(f"s\x00{i % 3}", i, 1.0, 0.5) for i in range(MAX_POINTS_PER_CHUNK + 7)]
    params = {f"p{i}": i for i in range(1005)} | {"k" * 201: 1, "big": "v" * 20_000,
                                                    "deep": json.loads("[" * 50 + "]" * 50)}
    chunk = decode(line(wire.tail("r", "tb/x\n\ud800", 1, 0, 10, points=points,
                                  params=params)))
    assert isinstance(chunk, TailChunk)
    assert len(chunk.points) == MAX_POINTS_PER_CHUNK
    assert {p.series for p in chunk.points} == {"s\ufffd0", "s\ufffd1", "s\ufffd2"}
    assert chunk.source == "tb/x\ufffd\ufffd"  # a key of the stored offsets: it encodes
    assert len(chunk.params) == 1000 and "big" not in chunk.params
    assert "7 points left out" in chunk.warning
    assert "hyper-parameters left out" in chunk.warning


class _Quiet:
    """A session that does nothing; the test reports for it."""

    def __init__(self, spec: HostSpec, listener: SessionListener) -> None:
        self.spec = spec
        self.listener = listener

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> HostState:
        return HostState.ONLINE

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        pass

    def unwatch(self, run_id: str) -> None:
        pass


def _on_worker(fn: Callable[[], None]) -> None:
    thread = threading.Thread(target=fn, name="fake-limits")
    thread.start()
    thread.join(5)


def test_the_host_view_says_what_was_cut_and_history_stays_bounded() -> None:
    sessions: dict[str, _Quiet] = {}

    def factory(spec: HostSpec, listener: SessionListener) -> _Quiet:
        sessions[spec.name] = _Quiet(spec, listener)
        return sessions[spec.name]

    monitor = ClusterMonitor(factory)
    for name in ("big", "renumbers"):
        monitor.add_host(HostSpec(name=name))
    big, renumbers = sessions["big"].listener, sessions["renumbers"].listener
    hello = decode(hello_line(1000))
    assert isinstance(hello, Hello)
    _on_worker(lambda: big.on_hello("big", hello))
    view = monitor.host("big")
    assert view is not None and view.note == GPUS_CUT
    # Readings of GPUs beyond those the hello announced are left out, and said so.
    beyond = decode(sample_line(10, first=MAX_GPUS - 4))
    assert isinstance(beyond, Sample)
    _on_worker(lambda: big.on_sample("big", beyond))
    view = monitor.host("big")
    assert view is not None and view.sample is not None
    assert [r.index for r in view.sample.gpus] == list(range(MAX_GPUS - 4, MAX_GPUS))
    assert view.note == (f"{GPUS_CUT}; host sent readings of 6 GPUs beyond the {MAX_GPUS} "
                         "shown; left out")
    crowded = decode(sample_line(1, processes=100))
    assert isinstance(crowded, Sample)
    _on_worker(lambda: big.on_sample("big", crowded))
    view = monitor.host("big")
    assert view is not None and view.note == (
        f"{GPUS_CUT}; host announced 100 processes on one GPU; showing the first 64")
    # A host that announced no GPU and numbers them anew in every sample keeps showing
    # the first ones it sampled: nothing on screen changes, nothing piles up.
    for first in range(0, 100 * MAX_GPUS, MAX_GPUS):
        sample = decode(sample_line(MAX_GPUS, first=first))
        assert isinstance(sample, Sample)
        _on_worker(lambda s=sample: renumbers.on_sample("renumbers", s))
    assert len(monitor.history("renumbers", 0).times) == 1
    assert not monitor.history("renumbers", 99 * MAX_GPUS).times
    view = monitor.host("renumbers")
    assert view is not None and view.sample is not None and view.sample.gpus == ()
    assert view.note == (f"host sent readings of {MAX_GPUS} GPUs beyond the {MAX_GPUS} "
                         "shown; left out")
    # A foreign chunk (no run was placed on this host) adds its own sentence, once.
    for _ in range(3):
        _on_worker(lambda: big.on_tail("big", TailChunk("someone-else", "output.log",
                                                         1, 0, 1, b"x")))
    view = monitor.host("big")
    assert view is not None and view.note.count("did not place") == 1
    # One hello per connection: another one on it changes nothing; a new connection may.
    again = decode(hello_line(2))
    assert isinstance(again, Hello)
    _on_worker(lambda: big.on_hello("big", again))
    view = monitor.host("big")
    assert view is not None and view.hello is hello and "hello again" in view.note
    _on_worker(lambda: big.on_state("big", HostState.OFFLINE, "cut"))
    _on_worker(lambda: big.on_hello("big", again))
    view = monitor.host("big")
    assert view is not None and view.hello is again


def test_a_run_keeps_at_most_1000_series_with_names_of_200_characters(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    try:
        ms = MetricStore(store)

        def chunk(start: int, names: list[str]) -> tuple[str, TailChunk]:
            pts = tuple(MetricPoint(n, 1, 1.0, 1.0) for n in names)
            return ("h", TailChunk("r1", "metrics.jsonl", 1, start, start + 1, points=pts))

        long_name = "n" * (MAX_SERIES_NAME_CHARS + 1)
        first = ms.ingest([chunk(0, [f"s{i:04d}" for i in range(600)] + [long_name])])
        second = ms.ingest([chunk(1, [f"s{i:04d}" for i in range(1200)])])
        third = ms.ingest([chunk(2, ["s0000", "s1100", long_name])])
        names = [s.name for s in ms.series("r1")]
        assert len(names) == MAX_SERIES_PER_RUN and names[-1] == "s0999"
        assert ms.series("r1")[0].count == 3  # known series go on
        texts = [w[2] for r in (first, second, third) for w in r.warnings]
        assert len(texts) == 2  # once per run and kind, not per batch or point
        assert "200 characters" in texts[0] and "1000 series" in texts[1]
    finally:
        store.close()


@pytest.mark.parametrize("gpus", [MAX_GPUS, MAX_GPUS + 1])
def test_the_bound_is_exact(gpus: int) -> None:
    hello = decode(hello_line(gpus))
    assert isinstance(hello, Hello)
    assert len(hello.gpus) == MAX_GPUS and bool(hello.cut) == (gpus > MAX_GPUS)
