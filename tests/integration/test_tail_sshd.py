"""Live capture over real SSH: a run on a simulated workstation logs through the labdeck
client, prints to its console and writes a TensorBoard file; the session tails all three.
The console arrives byte for byte and the points exactly, across a frozen sshd (the job
goes on writing meanwhile) and a restarted session resuming from its offsets."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

from ssh_backend.connect import Timeouts
from ssh_backend.protocol import TailChunk
from ssh_backend.runs import LaunchRequest, launch
from ssh_backend.session import HostSession
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.runhost import RunHost, wait_until
from tests.harness.sshd import Lab, SshdHost

pytestmark = [pytest.mark.sshd]
QUICK = Timeouts(channel=2.0, dead_after=4.0, ping_interval=1.0, backoff_initial=0.2,
                 backoff_max=1.0)
RUN_ID = "tail-sshd-1"
PHASE = 60  # steps per phase

JOB = """
import os, sys, time
import labdeck
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
gate, ready = sys.argv[1], sys.argv[2]
run = labdeck.init(config={"lr": 0.5, "model": {"depth": 3}}, flush_interval=0.1)
tb = EventFileWriter(os.environ["LABDECK_TB_DIR"] + "/train", flush_secs=3600)

def step(i):
    loss = 1.0 / (i + 1)
    print("step %d loss=%.6f " % (i, loss) + "x" * (i * 37 % 300), flush=True)
    run.log({"loss": loss, "opt": {"lr": 0.5 * 0.99 ** i}}, step=i)
    value = summary_pb2.Summary.Value(tag="tb_loss", simple_value=loss)
    tb.add_event(event_pb2.Event(wall_time=time.time(), step=i,
                                 summary=summary_pb2.Summary(value=[value])))

for i in range(PHASE):
    step(i)
run.flush(); tb.flush()
open(ready, "w").close()
while not os.path.exists(gate):
    time.sleep(0.05)
for i in range(PHASE, 2 * PHASE):
    step(i)
    time.sleep(0.01)
tb.close(); run.finish()
"""


class TailRecorder(Recorder):
    """A Recorder that also keeps every tail chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[TailChunk] = []
        self.applied = 0  # how many chunks the test's Store has taken
        self._tail_lock = threading.Lock()

    def on_tail(self, host: str, chunk: TailChunk) -> None:
        with self._tail_lock:
            self.chunks.append(chunk)


class Store:
    """What the app would store: chunks applied in order, strictly contiguous."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.console = bytearray()
        self.points: dict[str, list[tuple[str, int | None, float, float]]] = {}
        self.params: dict[str, object] = {}

    def apply(self, chunk: TailChunk) -> None:
        assert not chunk.reset, chunk
        assert chunk.start == self.offsets.get(chunk.source, 0), (
            f"{chunk.source}: chunk at {chunk.start}, stored up to "
            f"{self.offsets.get(chunk.source, 0)}: duplicated or lost bytes")
        assert not chunk.warning, chunk.warning
        self.offsets[chunk.source] = chunk.end
        self.console += chunk.data
        self.points.setdefault(chunk.source, []).extend(
            (p.series, p.step, p.wall_time, p.value) for p in chunk.points)
        self.params.update(chunk.params)


@pytest.fixture(autouse=True)
def _kill_leftover_runs(lab: Lab) -> Iterator[None]:
    yield
    for host in lab.hosts:
        RunHost(host.root).cleanup()


def online(lab: Lab, host: SshdHost, make_session: SessionFactory,
           rec: Recorder) -> HostSession:
    session = make_session(host.spec(), rec, lab.known_hosts, timeouts=QUICK)
    mark = rec.mark()
    session.start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=15, since=mark)
    return session


def caught_up(rec: TailRecorder, store: Store, folder: Path, timeout: float) -> None:
    """Apply chunks as they come until every file on the host is covered."""
    def covered() -> bool:
        with rec._tail_lock:
            new = rec.chunks[rec.applied:]
        for chunk in new:
            store.apply(chunk)
        rec.applied += len(new)
        files = {"output.log": folder / "output.log", "metrics.jsonl": folder / "metrics.jsonl"}
        for path in (folder / "tb").rglob("events.out.tfevents.*"):
            files["tb/" + path.relative_to(folder / "tb").as_posix()] = path
        return len(files) == 3 and all(
            store.offsets.get(name) == path.stat().st_size for name, path in files.items())

    wait_until(covered, timeout, f"the tails to reach the files' ends ({store.offsets})",
               every=0.1)


@pytest.mark.timeout(120)
def test_tails_survive_a_frozen_sshd_and_a_restarted_session(
    lab: Lab, make_session: SessionFactory
) -> None:
    host = lab.hosts[0]
    rec = TailRecorder()
    session = online(lab, host, make_session, rec)
    session.watch(RUN_ID, {})  # before the run exists: the watch waits for its files
    uuid = rec.hellos[host.name][-1].gpus[0].uuid
    gate, ready = host.home / "tail-gate", host.home / "tail-ready"
    script = JOB.replace("PHASE", str(PHASE))
    job = {"argv": [sys.executable, "-c", script, str(gate), str(ready)],
           "sim_host": host.name}
    assert launch(session, LaunchRequest(RUN_ID, job, (0,), (uuid,))).kind == "running"
    folder = host.home / ".labdeck" / "runs" / RUN_ID
    wait_until(ready.exists, 30, "the job's first phase")
    store = Store()
    caught_up(rec, store, folder, 20)
    assert len(store.points["metrics.jsonl"]) == 2 * PHASE  # loss and opt/lr per step

    mark = rec.mark()
    host.freeze()  # the link hangs; the job writes its second phase meanwhile
    try:
        gate.touch()
        wait_until((folder / "exit_code").exists, 30, "the job to finish")
        rec.wait_state(host.name, HostState.OFFLINE, timeout=15, since=mark)
    finally:
        host.thaw()
    rec.wait_state(host.name, HostState.ONLINE, timeout=20, since=rec.mark())
    caught_up(rec, store, folder, 20)
    assert (folder / "exit_code").read_text().strip() == "0"

    # Byte for byte, and every point exactly as the job wrote it.
    assert bytes(store.console) == (folder / "output.log").read_bytes()
    assert store.console.count(b"\n") == 2 * PHASE
    written = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    expected = [(name, r["step"], r["t"], value)
                for r in written if "m" in r for name, value in r["m"].items()]
    assert store.points["metrics.jsonl"] == expected and len(expected) == 4 * PHASE
    assert store.params == {"lr": 0.5, "model/depth": 3}
    [tb_source] = [s for s in store.offsets if s.startswith("tb/")]
    loader = RawEventFileLoader(str(folder / "tb" / tb_source[3:]))
    events = [event_pb2.Event.FromString(raw) for raw in loader.Load()]
    tb_expected = [("train/" + v.tag, e.step, e.wall_time, v.simple_value)
                   for e in events for v in e.summary.value]
    assert store.points[tb_source] == tb_expected and len(tb_expected) == 2 * PHASE

    # The app restarts: a new session resumes from the offsets it had stored.
    session.stop()
    rec2 = TailRecorder()
    again = online(lab, host, make_session, rec2)
    again.watch(RUN_ID, dict(store.offsets))
    time.sleep(1.5)
    assert rec2.chunks == [], "a resumed watch sent content again"
    assert again.watches.offsets(RUN_ID) == store.offsets
    with (folder / "output.log").open("ab") as fh:
        fh.write(b"appended after the run\n")
    caught_up(rec2, store, folder, 10)
    assert bytes(store.console) == (folder / "output.log").read_bytes()
