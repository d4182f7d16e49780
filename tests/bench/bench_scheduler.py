"""Time one ``plan()`` over 10k queued runs on 64 hosts × 8 GPUs (target: under 20 ms).

Run: ``.venv/bin/python tests/bench/bench_scheduler.py``. Not a pytest module (the name
does not start with ``test_``): timings on a shared machine are for reading, not asserting.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.hosts.cluster import HostView
from app.core.queue.runs import Run, RunState
from app.core.queue.scheduler import Policy, plan
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import GpuProcess, GpuReading, GpuStatic, Hello, Sample
from ssh_backend.states import HostState

H100_TOTAL_MIB = 81559.0  # from shared/fixtures/nvidia-h100 (nvidia-smi and NVML agree)
HOSTS, GPUS, QUEUED = 64, 8, 10_000


def cluster(rng: random.Random, busy_share: float) -> tuple[list[HostView], set[tuple[str, int]]]:
    views, reserved = [], set()
    for h in range(HOSTS):
        name = f"gpu{h:02d}"
        readings = []
        for i in range(GPUS):
            procs: tuple[GpuProcess, ...] = ()
            used = 0.0
            if rng.random() < busy_share:
                procs = (GpuProcess(pid=1000 + i, user="someone", command="python train.py",
                                    mem_mib=4241.0),)
                used = 4241.0
            elif rng.random() < 0.02:
                reserved.add((name, i))
            readings.append(GpuReading(
                index=i, uuid=f"GPU-{name}-{i}", util_pct=0.0, mem_used_mib=used,
                mem_total_mib=H100_TOTAL_MIB, temp_c=50.0, power_w=79.0, power_limit_w=700.0,
                fan_pct=None, processes=procs,
            ))
        hello = Hello(
            protocol=1, agent_version="1", hostname=name, boot_id="b", backend="nvml",
            backend_detail="", simulated=False,
            gpus=tuple(GpuStatic(r.index, r.uuid, "NVIDIA H100 80GB HBM3", H100_TOTAL_MIB,
                                 700.0) for r in readings),
        )
        state = HostState.OFFLINE if h % 16 == 15 else HostState.ONLINE
        views.append(HostView(spec=HostSpec(name=name), state=state, hello=hello,
                              sample=Sample(seq=1, time=0.0, gpus=tuple(readings))))
    return views, reserved


def queue(rng: random.Random) -> list[Run]:
    runs = []
    for k in range(QUEUED):
        spec: dict[str, object] = {"name": f"run{k}",
                                   "gpus": rng.choices([1, 2, 4, 8], [60, 20, 12, 8])[0]}
        roll = rng.random()
        if roll < 0.10:
            spec["hosts"] = [f"gpu{rng.randrange(HOSTS):02d}" for _ in range(2)]
        elif roll < 0.20:
            spec["host_tags"] = [rng.choice(["a100", "h100", "nvlink"])]
        elif roll < 0.21:
            spec.update(hosts=[f"gpu{rng.randrange(HOSTS):02d}"], pin_gpus=[0], gpus=1)
        elif roll < 0.26:
            spec["min_free_mem_mib"] = 40000.0
        runs.append(Run(
            id=f"r{k:08d}", name=f"run{k}", spec=spec, state=RunState.QUEUED,
            user=f"user{rng.randrange(20)}", priority=rng.choice([-1, 0, 0, 0, 1, 2]),
            created_at=float(k), seq=k + 1, queued_at=float(k),
        ))
    return runs


def main() -> None:
    rng = random.Random(7)
    tags = {f"gpu{h:02d}": [["a100"], ["h100"], ["h100", "nvlink"]][h % 3]
            for h in range(HOSTS)}
    runs = queue(rng)
    for label, busy_share in [("idle lab", 0.0), ("40% busy lab", 0.4), ("full lab", 1.0)]:
        hosts, reserved = cluster(rng, busy_share)
        in_flight = {(h.name, 7) for h in hosts[:8]}
        active = {f"user{u}": u % 4 for u in range(20)}
        times, placed = [], 0
        for _ in range(15):
            started = time.perf_counter()
            placed = len(plan(runs, hosts, reserved, in_flight, Policy(),
                              host_tags=tags, active_per_user=active, now=float(QUEUED)))
            times.append((time.perf_counter() - started) * 1000)
        print(f"plan() {label}: {QUEUED} queued, {HOSTS}×{GPUS} GPUs, {placed} placed: "
              f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")


if __name__ == "__main__":
    main()
