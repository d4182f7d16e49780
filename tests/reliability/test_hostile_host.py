"""A hostile host against the whole app: a real ClusterMonitor, Ingestor and main window
(offscreen), one honest host (the real agent, simulated GPUs, a run with output) and one
hostile host (tests/harness/hostile_agent.py, through a real LocalSession: pipes, reader,
decoder) that floods random and adversarial messages of every type for a while.

Holds: nothing the hostile host sends changes a record of the honest host's run (nor
creates a record of a run nobody placed on it), its own run keeps bounded series, the GUI
thread never stalls for long (a 10 ms QTimer's largest gap), the process's memory stays
bounded, and the hostile host's header says plainly what was left out. Quick mode floods
for a few seconds with a fixed seed; LABDECK_RELIABILITY=full for longer with a new seed.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer

from app.core.hosts.cluster import ClusterMonitor
from app.core.jobs.jobspec import JobSpec
from app.core.metrics.ingest import IngestOptions, Ingestor
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.ui.shell.main_window import MainWindow
from ssh_backend.connect import Timeouts
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.limits import MAX_GPUS, MAX_SERIES_NAME_CHARS, MAX_SERIES_PER_RUN
from ssh_backend.local import LocalSession
from ssh_backend.states import HostState
from tests.harness.run_rows import run_rows, stored_runs
from tests.reliability.scale import FULL, pick

pytestmark = [pytest.mark.reliability, pytest.mark.gui]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the QApplication starts

HOSTILE_AGENT = Path(__file__).resolve().parents[1] / "harness" / "hostile_agent.py"
# The flood lasts this long and this many messages, whichever ends later (on a busy
# machine the hostile agent, which yields its CPU to the app, sends fewer a second).
FLOOD_S = pick(4, 60)
FLOOD_LINES = pick(100, 2500)
MAX_STALL_S = 0.25
# Floods at most this many times to measure the stall (see the test).
ROUNDS = 3
# A machine this much slower than idle (see slowdown()) is too busy for a wall-time bound.
BUSY_MACHINE = 1.5
MAX_GROWTH_MIB = 200
HONEST_LOG = b"".join(b"step %d loss=%.2f\n" % (i, 1 / (i + 1)) for i in range(200))
HONEST_METRICS = b"".join(
    json.dumps({"step": i, "t": 1.7e9 + i, "m": {"acc": i / 200},
                **({"params": {"lr": 0.1}} if i == 0 else {})}).encode() + b"\n"
    for i in range(200))


def write_atomic(path: Path, text: str) -> None:
    """The hostile agent reads its orders while they may be rewritten."""
    temp = path.with_suffix(".tmp")
    temp.write_text(text)
    temp.replace(path)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Lab:
    """A store with one run on each host, the monitor, the ingestor and the window."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store.open(root / "labdeck.sqlite3")
        self.runs = RunStore(self.store)
        self.honest = self._place("ws-a")
        self.hostile_run = self._place("ws-b")
        folder = root / "a" / ".labdeck" / "runs" / self.honest
        folder.mkdir(parents=True, mode=0o700)
        (folder / "output.log").write_bytes(HONEST_LOG)
        (folder / "metrics.jsonl").write_bytes(HONEST_METRICS)
        (root / "b").mkdir()
        self.monitor = ClusterMonitor(self._session)
        self.ingestor = Ingestor(self.store, self.monitor, IngestOptions(refresh_s=0.2))

    def _place(self, host: str) -> str:
        spec = JobSpec(name=f"job on {host}", argv=("python3", "t.py"))
        (run_id,) = self.runs.submit([spec.to_dict()], "alice")
        assert self.runs.claim(run_id, host, [0], ["GPU-0"])
        assert self.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING)
        run = self.runs.get(run_id)
        assert run is not None
        return run.host_run_id

    def _session(self, spec: HostSpec, listener: SessionListener) -> LocalSession:
        quick = Timeouts(backoff_initial=0.2, backoff_max=0.5, ping_interval=1.0)
        if spec.name == "ws-a":
            return LocalSession(spec, listener, timeouts=quick, home=self.root / "a")
        return LocalSession(spec, listener, timeouts=quick, home=self.root / "b",
                            agent_script=HOSTILE_AGENT)

    def unleash(self, round_: int, seed: int) -> Path:
        """Start the hostile host, or its next round of flooding; the path that exists
        once this round is over."""
        orders = {"round": round_, "seed": seed, "until": time.time() + FLOOD_S,
                  "lines": FLOOD_LINES, "victims": [self.honest], "own": [self.hostile_run]}
        write_atomic(self.root / "b" / "hostile.json", json.dumps(orders))
        if self.monitor.host("ws-b") is None:
            self.monitor.add_host(HostSpec(name="ws-b", local=True,
                                           agent=AgentOptions(interval_s=0.2)))
        return self.root / "b" / f"hostile.done.{round_}"

    def rows(self, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
        return run_rows(self.store, run_id)

    def stored_runs(self) -> set[str]:
        return stored_runs(self.store)


class MemoryGuard:
    """Ends the whole test run, loudly, once the process holds ``limit_mib`` more than
    when it started: an app that lets a host fill its memory must fail this test, not
    take the shared machine (and everything else running on it) down with it. Needed
    because what eats memory may be the GUI thread itself, stuck in Qt (a rich-text
    label reading ``<img src=/dev/zero>``), where no exception can reach it."""

    def __init__(self, limit_mib: float) -> None:
        self._limit = rss_mib() + limit_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hostile-memory-guard")

    def __enter__(self) -> MemoryGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            if rss_mib() > self._limit:
                sys.stderr.write(f"\n{__name__}: memory grew past {self._limit:.0f} MiB under "
                                 "a hostile host; ending the test run\n")
                sys.stderr.flush()
                os._exit(70)


class StallMeter:
    """The largest gap between ticks of a 10 ms timer on the GUI thread: in wall time,
    and in the GUI thread's own CPU time (the work it did in that gap, which a machine
    busy with other work does not inflate)."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._on_tick)
        self.last = self.last_cpu = 0.0
        self.max_gap = self.max_cpu_gap = 0.0

    def start(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.max_gap = self.max_cpu_gap = 0.0
        self.timer.start()

    def stop(self) -> tuple[float, float]:
        self.timer.stop()
        return self.max_gap, self.max_cpu_gap

    def _on_tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.max_gap = max(self.max_gap, now - self.last)
        self.max_cpu_gap = max(self.max_cpu_gap, cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu


def slowdown() -> float:
    """How much longer than its CPU time a CPU-bound stretch takes on this machine now
    (1 on an idle one; about 3 with twice as many busy processes as cores)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    while time.thread_time() - cpu < 0.3:
        pass
    return max(1.0, (time.perf_counter() - wall) / (time.thread_time() - cpu))


@pytest.fixture
def lab(qtbot: Any, tmp_path: Path) -> Iterator[tuple[Lab, MainWindow]]:
    made = Lab(tmp_path)
    window = MainWindow(made.monitor)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    made.monitor.add_host(HostSpec(name="ws-a", local=True,
                                   agent=AgentOptions(interval_s=0.2, backend="sim",
                                                      sim_gpus=2)))
    made.monitor.start()
    made.ingestor.start()
    try:
        yield made, window
    finally:
        made.ingestor.stop()
        window.bridge.detach()
        window.cluster_view.stop()
        made.monitor.stop()
        made.store.close()


@pytest.mark.timeout(FLOOD_S + 240)
def test_a_hostile_host_changes_no_other_run_and_freezes_nothing(qtbot: Any, lab: Any) -> None:
    made, window = lab
    ms = made.ingestor.metricstore
    qtbot.waitUntil(lambda: ms.offsets(made.honest).get("output.log") == len(HONEST_LOG)
                    and ms.offsets(made.honest).get("metrics.jsonl") == len(HONEST_METRICS),
                    timeout=30_000)
    assert made.ingestor.wait_idle(10)
    before = made.rows(made.honest)
    assert before["log_chunks"] and before["metric_chunks"] and before["run_params"]
    qtbot.wait(500)
    slower = slowdown()
    rss_before = rss_mib()

    seed = random.randrange(2**32) if FULL else 1
    meter = StallMeter()
    rounds: list[tuple[float, float]] = []
    with MemoryGuard(limit_mib=5 * MAX_GROWTH_MIB):
        # A wall-time stall also measures whatever else the machine does meanwhile (other
        # test runs on this shared machine): a round that misses is measured again, unless
        # the machine is too busy for that figure anyway.
        tries = ROUNDS if slower < BUSY_MACHINE else 1
        while len(rounds) < tries and (not rounds or min(rounds)[0] >= MAX_STALL_S):
            meter.start()
            done = made.unleash(len(rounds), seed + len(rounds))
            qtbot.waitUntil(done.exists, timeout=int(FLOOD_S * 1000) + 120_000)
            qtbot.wait(1000)  # what is in the pipe still
            rounds.append(meter.stop())
        assert made.ingestor.wait_idle(30)
        qtbot.wait(1000)  # the last views reach the window
        rss_growth = rss_mib() - rss_before
    slower = max(slower, slowdown())
    stall, stall_cpu = min(rounds)[0], max(cpu for _wall, cpu in rounds)
    said = (f"seed {seed}: GUI stall {stall * 1000:.0f} ms (rounds: "
            f"{', '.join(f'{wall * 1000:.0f}' for wall, _cpu in rounds)} ms), at most "
            f"{stall_cpu * 1000:.0f} ms of the GUI thread's CPU between two ticks (machine "
            f"{slower:.1f}x slower than idle), RSS {rss_before:.0f} MiB + {rss_growth:.0f} MiB")
    print(said)

    # Nothing of the honest host's run changed; no run was made up.
    assert made.rows(made.honest) == before, said
    assert made.stored_runs() <= {made.honest, made.hostile_run}, said
    # The hostile host's own run stays within its bounds.
    names = [s.name for s in ms.series(made.hostile_run)]
    assert len(names) <= MAX_SERIES_PER_RUN, said
    assert all(len(n) <= MAX_SERIES_NAME_CHARS for n in names), said
    # The window shows a bounded number of its GPUs, and says plainly what it left out.
    group = window.cluster_view.groups["ws-b"]
    assert len(group.tiles) <= MAX_GPUS, said
    view = made.monitor.host("ws-b")
    assert view is not None and "did not place" in view.note, said
    qtbot.waitUntil(lambda: group.note_label.text() == made.monitor.host("ws-b").note,
                    timeout=5000)
    assert group.note_label.textFormat() == Qt.TextFormat.PlainText
    honest = made.monitor.host("ws-a")
    assert honest is not None and honest.state is HostState.ONLINE, said

    # The work the app does between two turns of its event loop stays short. In wall
    # time too, unless the machine is busy with other work (the burner of the
    # reliability runs, other test runs): then that figure measures the other work.
    assert stall_cpu < MAX_STALL_S, said
    if slower < BUSY_MACHINE:
        assert stall < MAX_STALL_S, said
    assert rss_growth < MAX_GROWTH_MIB, said
