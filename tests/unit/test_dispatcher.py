"""The dispatcher against a real store and monitor, with scripted sessions and hosts.

The sessions report whatever state and GPU readings a test sets; ``FakeHosts`` plays the
host side of runs (launch, cancel, reconcile) in memory, with the same contract as
``ssh_backend.runs``: launch is idempotent, a held GPU refuses, reconcile answers
running / finished / lost / unknown. The real-host versions are in tests/integration.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.core.cluster import ClusterMonitor
from app.core.dispatcher import Dispatcher, DispatchOptions, host_run_id
from app.core.jobspec import JobSpec
from app.core.runs import RunState
from app.core.runstore import RunStore
from app.core.store import Store
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import GpuProcess, GpuReading, Sample
from ssh_backend.runs import LaunchRefused, LaunchRequest, RunStatus
from ssh_backend.states import HostState

FAST = DispatchOptions(tick_s=0.05, poll_s=0.1, min_poll_gap_s=0.02, refused_cooldown_s=0.2)
SIM = AgentOptions(interval_s=0.2, backend="sim", sim_gpus=4)
OUTSIDER = GpuProcess(pid=4242, user="bob", command="python manual.py", mem_mib=2000.0)


class FakeSession:
    """Reports what the test says, from a thread of its own (as real sessions do)."""

    def __init__(self, spec: HostSpec, listener: SessionListener) -> None:
        self.spec = spec
        self.listener = listener
        self.busy: set[int] = set()
        self.seq = 0

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

    def reconnect_now(self) -> None:
        pass

    def _on_worker(self, fn: Callable[[], None]) -> None:
        thread = threading.Thread(target=fn, name=f"fake-{self.name}")
        thread.start()
        thread.join(5)

    def set_state(self, state: HostState) -> None:
        self._on_worker(lambda: self.listener.on_state(self.name, state, ""))

    def sample(self, gpus: int = 4, leases: dict[int, str] | None = None) -> None:
        leases = leases or {}
        self.seq += 1
        readings = tuple(
            GpuReading(
                index=i, uuid=f"GPU-{self.name}-{i}", util_pct=0.0,
                mem_used_mib=2000.0 if i in self.busy else 1.0, mem_total_mib=81559.0,
                temp_c=40.0, power_w=70.0, power_limit_w=700.0, fan_pct=None,
                processes=(OUTSIDER,) if i in self.busy else (),
                leased_by=leases.get(i),
            )
            for i in range(gpus)
        )
        sample = Sample(seq=self.seq, time=time.time(), gpus=readings)
        self._on_worker(lambda: self.listener.on_sample(self.name, sample))

    def online(self) -> None:
        self.set_state(HostState.ONLINE)
        self.sample()


class FakeHosts:
    """The host side of runs for every fake session, keyed by host name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, RunStatus] = {}
        self.placed: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.launches: list[tuple[str, LaunchRequest]] = []
        self.cancels: list[str] = []
        self.reconciles: list[tuple[str, list[str]]] = []
        self.refuse: set[tuple[str, int]] = set()
        # Launches that fail on the way: "before" never reaches the host, "after" does.
        self.cut: str | None = None
        self.pids = iter(range(1000, 100000))

    def launch(self, session: Any, req: LaunchRequest) -> RunStatus:
        with self.lock:
            self.launches.append((session.name, req))
            if self.cut == "before":
                raise OSError("connection reset")
            if req.run_id in self.runs:
                return self.runs[req.run_id]
            held = [g for g in req.gpu_indices if (session.name, g) in self.refuse]
            if held:
                raise LaunchRefused(f"GPU {held[0]} is leased by another run")
            busy = {g for rid, (h, gpus) in self.placed.items() if h == session.name
                    and self.runs[rid].kind == "running" for g in gpus}
            assert not busy & set(req.gpu_indices), "two runs on one GPU"
            status = RunStatus(req.run_id, "running", pid=next(self.pids), boot_id="boot-1")
            self.runs[req.run_id] = status
            self.placed[req.run_id] = (session.name, req.gpu_indices)
            if self.cut == "after":
                raise OSError("connection reset")
            return status

    def cancel(self, session: Any, run_id: str, grace_s: float = 30.0) -> RunStatus:
        with self.lock:
            self.cancels.append(run_id)
        return self.finish(run_id, 143)

    def reconcile(self, session: Any, run_ids: list[str]) -> dict[str, RunStatus]:
        with self.lock:
            self.reconciles.append((session.name, list(run_ids)))
            return {r: self.runs.get(r, RunStatus(r, "unknown")) for r in run_ids}

    def finish(self, run_id: str, code: int) -> RunStatus:
        with self.lock:
            status = replace(self.runs[run_id], kind="finished", exit_code=code)
            self.runs[run_id] = status
            return status

    def set(self, run_id: str, kind: str, host: str = "ws1", gpus: tuple[int, ...] = (0,),
            **fields: Any) -> None:
        with self.lock:
            self.runs[run_id] = RunStatus(run_id, kind, **fields)  # type: ignore[arg-type]
            self.placed[run_id] = (host, gpus)

    def launched(self, run_id: str) -> int:
        """Launch calls for any attempt of ``run_id``."""
        with self.lock:
            return sum(1 for _, req in self.launches if base_id(req.run_id) == run_id)

    def started(self, run_id: str) -> int:
        """Processes started on a host for any attempt of ``run_id``."""
        with self.lock:
            return sum(1 for r in self.placed if base_id(r) == run_id)


class Rig:
    def __init__(self, root: Path, hosts: list[str]) -> None:
        self.store = Store.open(root / "labdeck.sqlite3")
        for name in hosts:
            self.store.add_host(HostSpec(name=name, agent=SIM))
        self.runs = RunStore(self.store)
        self.sessions: dict[str, FakeSession] = {}
        self.monitor = ClusterMonitor(self._session)
        self.monitor.set_hosts(self.store.hosts())
        self.hosts = FakeHosts()
        self.changed: list[str] = []
        self.dispatcher = self.new_dispatcher()

    def _session(self, spec: HostSpec, listener: SessionListener) -> FakeSession:
        self.sessions[spec.name] = FakeSession(spec, listener)
        return self.sessions[spec.name]

    def new_dispatcher(self, options: DispatchOptions = FAST) -> Dispatcher:
        dispatcher = Dispatcher(self.store, self.monitor, options, control=self.hosts)
        dispatcher.add_listener(self)
        return dispatcher

    def on_run_changed(self, run_id: str) -> None:
        self.changed.append(run_id)

    def submit(self, name: str = "job", user: str = "alice", **fields: Any) -> str:
        spec = JobSpec(name=name, argv=("python3", "-c", "pass"), **fields)
        (run_id,) = self.runs.submit([spec.to_dict()], user)
        self.dispatcher.wake()
        return run_id

    def state(self, run_id: str) -> RunState:
        run = self.runs.get(run_id)
        assert run is not None
        return run.state

    def wait_state(self, run_id: str, *states: RunState, timeout: float = 5.0) -> None:
        wait_for(lambda: self.state(run_id) in states, timeout,
                 lambda: f"{run_id} is {self.state(run_id)}, expected {states}")

    def close(self) -> None:
        self.dispatcher.stop()
        self.monitor.stop()
        self.store.close()


def base_id(host_id: str) -> str:
    return re.sub(r"-a[0-9]+$", "", host_id)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0,
             why: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {why()}")
        time.sleep(0.01)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, ["ws1", "ws2"])
    yield rig
    rig.close()


def test_runs_start_on_free_gpus_only(rig: Rig) -> None:
    ws1 = rig.sessions["ws1"]
    ws1.busy = {0}  # someone's manual process
    rig.runs.reserve("ws1", 1, "mine")
    one = rig.submit("one", hosts=("ws1",))
    two = rig.submit("two", gpus=2, hosts=("ws1",))
    rig.dispatcher.start()
    ws1.online()
    rig.wait_state(one, RunState.RUNNING)
    run = rig.runs.get(one)
    assert run is not None and run.host == "ws1" and run.gpus == (2,) and run.pid is not None
    (_, request), = rig.hosts.launches
    assert request.job["gpu_indices"] == [2] and request.job["sim_host"] == "ws1"
    assert request.job["argv"] == ["python3", "-c", "pass"]
    # Only GPU 3 is left on ws1: the 2-GPU run waits (never a partial placement).
    time.sleep(0.3)
    assert rig.state(two) is RunState.QUEUED
    rig.hosts.finish(one, 0)
    rig.wait_state(one, RunState.SUCCEEDED)
    rig.wait_state(two, RunState.RUNNING)
    run = rig.runs.get(two)
    assert run is not None and run.gpus == (2, 3)
    assert one in rig.changed and two in rig.changed


def test_exit_codes_are_recorded(rig: Rig) -> None:
    good, bad = rig.submit("good"), rig.submit("bad")
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.wait_state(good, RunState.RUNNING)
    rig.wait_state(bad, RunState.RUNNING)
    rig.hosts.finish(good, 0)
    rig.hosts.finish(bad, 137)
    rig.wait_state(good, RunState.SUCCEEDED)
    rig.wait_state(bad, RunState.FAILED)
    run = rig.runs.get(bad)
    assert run is not None and run.exit_code == 137 and "SIGKILL" in run.reason


def test_refused_launch_goes_back_to_the_queue_and_starts_elsewhere(rig: Rig) -> None:
    rig.hosts.refuse = {("ws1", g) for g in range(4)}
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    wait_for(lambda: rig.hosts.launched(run_id) >= 1)
    rig.sessions["ws2"].online()
    rig.wait_state(run_id, RunState.RUNNING)
    run = rig.runs.get(run_id)
    assert run is not None and run.host == "ws2" and run.attempt >= 1


@pytest.mark.parametrize("cut", ["before", "after"])
def test_a_launch_cut_off_midway_is_settled_by_reconcile(rig: Rig, cut: str) -> None:
    rig.hosts.cut = cut
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    wait_for(lambda: rig.hosts.launched(run_id) >= 1)
    rig.hosts.cut = None
    rig.wait_state(run_id, RunState.RUNNING)
    assert rig.hosts.started(run_id) == 1  # started on a host exactly once
    if cut == "after":
        # The host had it: reconcile found it running, no second launch was needed.
        assert rig.hosts.launched(run_id) == 1


def test_restart_reconciles_what_happened_meanwhile(rig: Rig) -> None:
    ids = [rig.submit(f"r{i}", max_retries=2) for i in range(5)]
    no_retry = rig.submit("no-retry", retry_on_lost=False)
    where = {}
    for i, run_id in enumerate([*ids, no_retry]):
        host = "ws1" if i < 4 else "ws2"
        where[run_id] = (host, (i % 4,))
        assert rig.runs.claim(run_id, host, (i % 4,), (f"GPU-{host}-{i % 4}",))
    done, failed, lost, never, running = ids
    for run_id in (done, failed, lost, running, no_retry):
        assert rig.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING, pid=7)
    rig.hosts.set(done, "finished", *where[done], exit_code=0)
    rig.hosts.set(failed, "failed", *where[failed],
                  detail="the run's process is gone without an exit code")
    rig.hosts.set(lost, "lost", *where[lost])
    rig.hosts.set(no_retry, "lost", *where[no_retry])
    rig.hosts.set(running, "running", *where[running], pid=8, boot_id="boot-1")
    # ``never`` stays LAUNCHING with no run dir on the host: the crash came before launch.
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.sessions["ws2"].online()
    rig.wait_state(done, RunState.SUCCEEDED)
    rig.wait_state(failed, RunState.FAILED)
    rig.wait_state(no_retry, RunState.LOST)
    # Lost with retries left, and never launched: queued again, then started again.
    for run_id in (lost, never):
        wait_for(lambda run_id=run_id: (r := rig.runs.get(run_id)) is not None and r.attempt == 1)
        rig.wait_state(run_id, RunState.RUNNING)
    assert rig.state(running) is RunState.RUNNING
    lost_run = rig.runs.get(no_retry)
    assert lost_run is not None and "rebooted" in lost_run.reason
    assert rig.hosts.launched(done) == 0 and rig.hosts.launched(running) == 0


def test_cancel_ends_a_running_run_with_its_exit_code(rig: Rig) -> None:
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.wait_state(run_id, RunState.RUNNING)
    rig.runs.request_cancel(run_id)
    rig.dispatcher.wake()
    rig.wait_state(run_id, RunState.CANCELLED)
    run = rig.runs.get(run_id)
    assert run is not None and run.exit_code == 143 and rig.hosts.cancels == [run_id]


def test_a_reconnect_asks_the_host_again(rig: Rig) -> None:
    run_id = rig.submit()
    rig.dispatcher = rig.new_dispatcher(replace(FAST, poll_s=60.0))
    rig.dispatcher.start()
    ws1 = rig.sessions["ws1"]
    ws1.online()
    rig.wait_state(run_id, RunState.RUNNING)
    ws1.set_state(HostState.OFFLINE)
    rig.hosts.finish(run_id, 0)  # it ended while the network was down
    time.sleep(0.3)
    assert rig.state(run_id) is RunState.RUNNING  # nobody could have told us yet
    ws1.online()
    rig.wait_state(run_id, RunState.SUCCEEDED)


def test_an_offline_host_gets_nothing(rig: Rig) -> None:
    run_id = rig.submit(hosts=("ws2",))
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.sessions["ws2"].set_state(HostState.OFFLINE)
    rig.sessions["ws2"].sample()  # a late sample of a host that is offline now
    assert rig.dispatcher.wait_idle(5)
    assert rig.state(run_id) is RunState.QUEUED and rig.hosts.launches == []


def test_a_second_dispatcher_on_one_store_waits_then_takes_over(rig: Rig, tmp_path: Path) -> None:
    ids = [rig.submit(f"r{i}", user=f"u{i % 3}") for i in range(40)]
    other_store = Store.open(tmp_path / "labdeck.sqlite3")
    other = Dispatcher(other_store, rig.monitor, FAST, control=rig.hosts)
    try:
        rig.dispatcher.start()
        wait_for(lambda: rig.dispatcher.dispatching)
        other.start()
        for session in rig.sessions.values():
            session.online()
        finished: set[str] = set()
        deadline = time.monotonic() + 30
        while len(finished) < len(ids):
            assert time.monotonic() < deadline, f"{len(finished)} of {len(ids)} finished"
            if len(finished) >= 10 and rig.dispatcher.dispatching:
                assert not other.dispatching and "dispatches this queue" in other.passive_reason()
                rig.dispatcher.stop()  # mid-queue: runs launching and running
            for run in rig.runs.list_runs([RunState.RUNNING]):
                if run.id not in finished:
                    finished.add(run.id)
                    # FakeHosts asserts that no GPU is ever booked twice.
                    rig.hosts.finish(host_run_id(run), 0)
            time.sleep(0.01)
        wait_for(lambda: rig.runs.count([RunState.SUCCEEDED]) == len(ids), 10)
        assert other.dispatching
        assert all(rig.hosts.started(run_id) == 1 for run_id in ids)
    finally:
        other.stop()
        other_store.close()


def test_a_lease_that_disappears_from_the_samples_asks_the_host_at_once(rig: Rig) -> None:
    rig.dispatcher = rig.new_dispatcher(replace(FAST, poll_s=60.0))
    run_id = rig.submit()
    rig.dispatcher.start()
    ws1 = rig.sessions["ws1"]
    ws1.online()
    rig.wait_state(run_id, RunState.RUNNING)
    run = rig.runs.get(run_id)
    assert run is not None
    ws1.sample(leases={run.gpus[0]: host_run_id(run)})
    rig.hosts.finish(run_id, 0)
    time.sleep(0.3)
    assert rig.state(run_id) is RunState.RUNNING  # polls are a minute apart
    ws1.sample()  # the lease is gone: the run ended
    rig.wait_state(run_id, RunState.SUCCEEDED, timeout=2.0)


def test_a_timed_out_or_foreign_cancelled_run_says_so(rig: Rig) -> None:
    slow, stopped = rig.submit("slow"), rig.submit("stopped")
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.wait_state(slow, RunState.RUNNING)
    rig.wait_state(stopped, RunState.RUNNING)
    with rig.hosts.lock:
        rig.hosts.runs[slow] = replace(rig.hosts.runs[slow], kind="finished", exit_code=143,
                                       timed_out=True)
        rig.hosts.runs[stopped] = replace(rig.hosts.runs[stopped], kind="finished",
                                          exit_code=143, cancelled=True)
    rig.wait_state(slow, RunState.FAILED)
    rig.wait_state(stopped, RunState.CANCELLED)
    run = rig.runs.get(slow)
    assert run is not None and "time limit" in run.reason and run.exit_code == 143
