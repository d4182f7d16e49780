"""In-process sessions that replay recorded H100 readings: the self-test and the preview.

They implement the ``Session`` interface without any network, so the real window can be
built and rendered anywhere. Every host they produce is marked simulated (its ``hello``
says so and its spec uses the "sim" backend), and the UI labels it that way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ssh_backend.events import SessionListener, SessionUnavailable
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import PROTOCOL_VERSION, GpuProcess, GpuReading, GpuStatic, Hello, Sample
from ssh_backend.states import HostState

GPU_NAME = "NVIDIA H100 80GB HBM3"
MEM_TOTAL_MIB = 81559.0
POWER_LIMIT_W = 700.0

# (util %, memory used MiB, temperature °C, power W, training process MiB or None), every
# 0.75 s of an NVML recording of one H100: idle, a CUDA context appears, training at 100 %.
TRACE: tuple[tuple[float, float, float, float, float | None], ...] = (
    (0, 480, 50, 79, None), (0, 480, 50, 79, None), (0, 480, 50, 79, None),
    (0, 1520, 51, 112, 1032), (0, 1520, 51, 134, 1032), (0, 1684, 51, 134, 1196),
    (100, 4240, 64, 358, 3752), (100, 4240, 65, 639, 3752), (100, 4240, 66, 644, 3752),
    (100, 4240, 67, 646, 3752), (100, 4240, 68, 648, 3752), (100, 4240, 69, 649, 3752),
    (100, 4240, 70, 649, 3752), (100, 4240, 71, 653, 3752), (99, 4240, 72, 656, 3752),
    (100, 4240, 73, 659, 3752), (100, 4240, 73, 660, 3752), (0, 4240, 61, 460, 3752),
)
IDLE = TRACE[0]
BUSY_FROM = 6  # first index of the training phase


@dataclass(frozen=True, slots=True)
class PreviewGpu:
    """What one simulated GPU replays: idle, or a job of ``user`` running ``command``."""

    user: str | None = None
    command: str | None = None
    pid: int = 0


# Two small demo hosts: who runs what is invented, the readings are recorded.
PREVIEW_LAB: dict[str, tuple[PreviewGpu, ...]] = {
    "sim-h100-a": (
        PreviewGpu("alice", "python train.py --lr 3e-4", 446),
        PreviewGpu("bob", "torchrun --nproc_per_node 2 finetune.py --config cfg/llama.yaml",
                   2210),
        PreviewGpu(),
        PreviewGpu(),
    ),
    "sim-h100-b": (
        PreviewGpu("carol", "python -m eval.harness --model ckpt/step_1200", 7311),
        PreviewGpu(),
    ),
}


def preview_specs(lab: dict[str, tuple[PreviewGpu, ...]] | None = None) -> list[HostSpec]:
    lab = PREVIEW_LAB if lab is None else lab
    return [
        HostSpec(name=name, hostname=f"{name}.lab.example",
                 agent=AgentOptions(interval_s=0.5, backend="sim", sim_gpus=len(gpus)))
        for name, gpus in lab.items()
    ]


def reading_at(index: int, gpu: PreviewGpu, step: int) -> GpuReading:
    """The reading of simulated GPU ``index`` at replay step ``step``."""
    if gpu.user is None:
        util, used, temp, power, proc_mib = IDLE
    else:
        busy = TRACE[BUSY_FROM:]
        util, used, temp, power, proc_mib = busy[(step + 3 * index) % len(busy)]
    processes: tuple[GpuProcess, ...] = ()
    if gpu.user is not None and proc_mib is not None:
        processes = (GpuProcess(pid=gpu.pid, user=gpu.user, command=gpu.command,
                                mem_mib=proc_mib),)
    return GpuReading(
        index=index, uuid=f"GPU-preview-{index:02d}", util_pct=util, mem_used_mib=used,
        mem_total_mib=MEM_TOTAL_MIB, temp_c=temp, power_w=power,
        power_limit_w=POWER_LIMIT_W, fan_pct=None, processes=processes,
    )


def hello_for(name: str, gpus: tuple[PreviewGpu, ...]) -> Hello:
    return Hello(
        protocol=PROTOCOL_VERSION, agent_version="preview", hostname=f"{name}.lab.example",
        boot_id="preview-boot", backend="sim", backend_detail="replayed H100 recording",
        simulated=True,
        gpus=tuple(GpuStatic(index=i, uuid=f"GPU-preview-{i:02d}", name=GPU_NAME,
                             memory_total_mib=MEM_TOTAL_MIB, power_limit_w=POWER_LIMIT_W)
                   for i in range(len(gpus))),
    )


class PreviewSession:
    """A ``Session`` whose worker thread replays the recording at the spec's interval."""

    def __init__(self, spec: HostSpec, listener: SessionListener,
                 gpus: tuple[PreviewGpu, ...] | None = None) -> None:
        self._spec = spec
        self._listener = listener
        count = max(spec.agent.sim_gpus, 1)
        self._gpus = gpus if gpus is not None else PREVIEW_LAB.get(
            spec.name, tuple(PreviewGpu() for _ in range(count)))
        self._state = HostState.STOPPED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def state(self) -> HostState:
        return self._state

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"preview-{self.name}",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._state = HostState.STOPPED

    def reconnect_now(self) -> None:
        """Nothing to reconnect: the replay never drops."""

    def control(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        raise SessionUnavailable(f"{self.name} is a preview and runs nothing")

    def upload(self, run_id: str, files: dict[str, bytes]) -> None:
        raise SessionUnavailable(f"{self.name} is a preview and runs nothing")

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        """Nothing to tail: a preview runs nothing."""

    def unwatch(self, run_id: str) -> None:
        """Nothing to stop."""

    def _set_state(self, state: HostState, detail: str = "") -> None:
        self._state = state
        self._listener.on_state(self.name, state, detail)

    def _run(self) -> None:
        self._set_state(HostState.CONNECTING)
        self._listener.on_hello(self.name, hello_for(self.name, self._gpus))
        self._set_state(HostState.ONLINE)
        interval = max(self._spec.agent.interval_s, 0.1)
        step = 0
        while not self._stop.is_set():
            sample = Sample(seq=step, time=time.time(), gpus=tuple(
                reading_at(i, gpu, step) for i, gpu in enumerate(self._gpus)))
            self._listener.on_sample(self.name, sample)
            step += 1
            self._stop.wait(interval)


def preview_session_factory(spec: HostSpec, listener: SessionListener) -> PreviewSession:
    return PreviewSession(spec, listener)
