"""A scriptable Session for GUI tests, and H100 readings taken from the NVML recording.

The values come from ../shared/fixtures/nvidia-h100/nvml.json: an H100 80GB HBM3 with
85520809984 bytes (81559 MiB) of memory, idle at 50 °C and 79 W of a 700 W limit with
480 MiB in use, no fan reading (NotSupported → None); and the training phase, where
pid 446 holds 1032 MiB at first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ssh_backend.events import SessionListener, SessionUnavailable
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import (
    PROTOCOL_VERSION,
    GpuProcess,
    GpuReading,
    GpuStatic,
    Hello,
    Sample,
    TailChunk,
)
from ssh_backend.states import HostState

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEM_MIB = 85520809984 / 2**20  # 81559.0
TRAIN = GpuProcess(pid=446, user="alice", command="python train.py --lr 3e-4", mem_mib=1032.0)


def h100_hello(host: str, gpus: int, simulated: bool = False) -> Hello:
    return Hello(
        protocol=PROTOCOL_VERSION, agent_version="test", hostname=f"{host}.lab", boot_id="b1",
        backend="nvml", backend_detail="NVML 13.580.159.04, driver 580.159.04",
        simulated=simulated,
        gpus=tuple(GpuStatic(index=i, uuid=f"GPU-{host}-{i}", name=H100_NAME,
                             memory_total_mib=H100_MEM_MIB, power_limit_w=700.0)
                   for i in range(gpus)),
    )


def idle_reading(index: int, host: str = "h") -> GpuReading:
    return GpuReading(index=index, uuid=f"GPU-{host}-{index}", util_pct=0.0,
                      mem_used_mib=480.0, mem_total_mib=H100_MEM_MIB, temp_c=50.0,
                      power_w=79.197, power_limit_w=700.0, fan_pct=None)


def busy_reading(index: int, host: str = "h", proc: GpuProcess = TRAIN) -> GpuReading:
    return GpuReading(index=index, uuid=f"GPU-{host}-{index}", util_pct=100.0,
                      mem_used_mib=4240.0, mem_total_mib=H100_MEM_MIB, temp_c=68.0,
                      power_w=649.437, power_limit_w=700.0, fan_pct=None, processes=(proc,))


class FakeSession:
    """Does nothing by itself; the test makes it report, always from a worker thread."""

    def __init__(self, spec: HostSpec, listener: SessionListener) -> None:
        self.spec = spec
        self.listener = listener
        self._state = HostState.STOPPED
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.reconnects = 0
        self.watched: dict[str, dict[str, int]] = {}
        self._seq = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> HostState:
        return self._state

    def start(self) -> None:
        self.started.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()

    def reconnect_now(self) -> None:
        self.reconnects += 1

    def control(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        raise SessionUnavailable(f"{self.name} is a fake and runs nothing")

    def upload(self, run_id: str, files: dict[str, bytes]) -> None:
        raise SessionUnavailable(f"{self.name} is a fake and runs nothing")

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        """Remembered in ``watched`` for tests; nothing is tailed."""
        self.watched[run_id] = dict(offsets)

    def unwatch(self, run_id: str) -> None:
        self.watched.pop(run_id, None)

    def report_tail(self, chunk: TailChunk) -> None:
        self._from_worker(lambda: self.listener.on_tail(self.name, chunk))

    def _from_worker(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, name=f"fake-{self.name}")
        t.start()
        t.join(5)

    def report_state(self, state: HostState, detail: str = "") -> None:
        self._state = state
        self._from_worker(lambda: self.listener.on_state(self.name, state, detail))

    def report_hello(self, hello: Hello) -> None:
        self._from_worker(lambda: self.listener.on_hello(self.name, hello))

    def report_sample(self, readings: list[GpuReading]) -> None:
        self._seq += 1
        sample = Sample(seq=self._seq, time=time.time(), gpus=tuple(readings))
        self._from_worker(lambda: self.listener.on_sample(self.name, sample))


class FakeLab:
    """The session factory for ClusterMonitor; remembers each session by host name."""

    def __init__(self) -> None:
        self.sessions: dict[str, FakeSession] = {}

    def __call__(self, spec: HostSpec, listener: SessionListener) -> FakeSession:
        session = FakeSession(spec, listener)
        self.sessions[spec.name] = session
        return session


def spec(name: str, simulated: bool = False) -> HostSpec:
    agent = AgentOptions(backend="sim", sim_gpus=4) if simulated else AgentOptions()
    return HostSpec(name=name, hostname=f"{name}.lab", user="alice", agent=agent)


def bring_online(lab: FakeLab, name: str, readings: list[GpuReading],
                 simulated: bool = False) -> None:
    session = lab.sessions[name]
    session.report_state(HostState.CONNECTING)
    session.report_hello(h100_hello(name, len(readings), simulated))
    session.report_state(HostState.ONLINE)
    session.report_sample(readings)
