"""Scripted sessions and hosts for the dispatcher's unit tests.

``FakeSession`` reports whatever state and GPU readings a test sets; ``FakeHosts`` plays
the host side of runs (launch, cancel, reconcile) in memory with the contract of
``ssh_backend.runs``: launch is idempotent per host run id, a held GPU refuses, reconcile
answers running / finished / lost / unknown. ``Rig`` ties them to a real store and monitor.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.events import RunChanged
from app.core.hosts.cluster import ClusterMonitor
from app.core.jobs.jobspec import JobSpec
from app.core.queue.dispatcher import Dispatcher, DispatchOptions
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import GpuProcess, GpuReading, Sample
from ssh_backend.runs import LaunchRefused, LaunchRequest, RunStatus
from ssh_backend.states import HostState

FAST = DispatchOptions(tick_s=0.05, poll_s=0.1, min_poll_gap_s=0.02, refused_cooldown_s=0.2,
                       host_refused_backoff_s=0.2)
SIM = AgentOptions(interval_s=0.2, backend="sim", sim_gpus=4)
OUTSIDER = GpuProcess(pid=4242, user="bob", command="python manual.py", mem_mib=2000.0)


class FakeSession:
    """Reports what the test says, from a thread of its own (as real sessions do)."""

    def __init__(self, spec: HostSpec, listener: SessionListener) -> None:
        self.spec = spec
        self.listener = listener
        self.busy: set[int] = set()
        self.util: dict[int, float | None] = {}  # GPU index → load (0 % when not set)
        self.seq = 0
        # The host's lab board as runctl would answer it (None: an old host without one).
        self.board: dict[str, Any] | None = None
        self.policy: dict[str, Any] = {}  # the host's lab policy, as runctl sends it
        self.published: list[Any] = []

    def control(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        if request.get("op") != "board" or self.board is None:
            raise OSError("no run control on this fake host")
        self.published.append(request.get("demand"))
        return {"ok": True, "board": self.board, "policy": self.policy}

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
                index=i, uuid=f"GPU-{self.name}-{i}", util_pct=self.util.get(i, 0.0),
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
        self.lock = threading.RLock()
        self.runs: dict[str, RunStatus] = {}
        self.placed: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.launches: list[tuple[str, LaunchRequest]] = []
        self.cancels: list[str] = []
        self.reconciles: list[tuple[str, list[str]]] = []
        self.refuse: set[tuple[str, int]] = set()
        # Launches that fail on the way: "before" never reaches the host, "after" does,
        # "late" times out at the app and reaches the host later (``deliver_late``).
        self.cut: str | None = None
        self.late: list[tuple[str, LaunchRequest]] = []
        self.fenced: set[str] = set()
        self.pids = iter(range(1000, 100000))

    def launch(self, session: Any, req: LaunchRequest) -> RunStatus:
        with self.lock:
            self.launches.append((session.name, req))
            if self.cut == "before":
                raise OSError("connection reset")
            if self.cut == "late":
                self.late.append((session.name, req))
                raise TimeoutError("run control timed out")
            return self._start(session.name, req)

    def deliver_late(self) -> list[str]:
        """Carry out the launches that timed out at the app, as a slow host would now;
        a fenced attempt or a run with another live attempt is refused, as runctl does."""
        started = []
        with self.lock:
            late, self.late = self.late, []
            for host, req in late:
                if req.run_id in self.fenced or self._live_sibling(req.run_id):
                    continue
                self._start(host, req)
                started.append(req.run_id)
        return started

    def _live_sibling(self, run_id: str) -> str | None:
        for other, status in self.runs.items():
            if other != run_id and base_id(other) == base_id(run_id) \
                    and status.kind == "running":
                return other
        return None

    def _start(self, name: str, req: LaunchRequest) -> RunStatus:
        with self.lock:
            if req.run_id in self.runs:
                return self.runs[req.run_id]
            held = [g for g in req.gpu_indices if (name, g) in self.refuse]
            if held:
                raise LaunchRefused(f"GPU {held[0]} is leased by another run")
            busy = {g for rid, (h, gpus) in self.placed.items() if h == name
                    and self.runs[rid].kind == "running" for g in gpus}
            assert not busy & set(req.gpu_indices), "two runs on one GPU"
            status = RunStatus(req.run_id, "running", pid=next(self.pids), boot_id="boot-1")
            self.runs[req.run_id] = status
            self.placed[req.run_id] = (name, req.gpu_indices)
            if self.cut == "after":
                raise OSError("connection reset")
            return status

    def cancel(self, session: Any, run_id: str, grace_s: float = 30.0) -> RunStatus:
        with self.lock:
            self.cancels.append(run_id)
        return self.finish(run_id, 143)

    def reconcile(self, session: Any, run_ids: list[str],
                  fence: Any = ()) -> dict[str, RunStatus]:
        with self.lock:
            self.reconciles.append((session.name, list(run_ids)))
            out = {}
            for r in run_ids:
                status = self.runs.get(r)
                if status is None and r in fence:
                    self.fenced.add(r)
                    status = RunStatus(r, "unknown", fenced=True,
                                       live_attempt=self._live_sibling(r))
                out[r] = status or RunStatus(r, "unknown")
            return out

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
        self.monitor.bus.subscribe(self.on_run_changed, (RunChanged,))
        return dispatcher

    def on_run_changed(self, event: RunChanged) -> None:
        self.changed.append(event.run_id)

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
