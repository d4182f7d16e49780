"""Fairness between lab members, simulated: three users, each with their own Labdeck, share
two hosts of four GPUs; each Labdeck decides alone with the real ``scheduler.plan`` and, in
the fair-share variant, the lab view it would read from the hosts' boards
(``fairshare.lab_state``). Today's behaviour (first come, first served: whoever's
Labdeck looks first takes a GPU that frees up) is measured in the same run.

Minute steps over simulated days. The users' jobs differ as real ones do: alice runs
4-hour 1-GPU jobs, bob 30-minute 1-GPU jobs, carol 1-hour 2-GPU jobs, and each always has
more queued. Every minute the Labdecks look in a random order. Figures: Jain's fairness
index of GPU-time, GPU utilisation while demand exists, and one user alone on the lab.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from app.core.hosts.cluster import HostView
from app.core.queue.fairshare import lab_state
from app.core.queue.runs import Run, RunState
from app.core.queue.scheduler import plan
from ssh_backend.hostspec import HostSpec
from ssh_backend.labboard import Board, Demand, LeaseHolder
from ssh_backend.protocol import GpuReading, Sample
from ssh_backend.states import HostState
from tests.bench.benchlib import figure

HOSTS = {"ws1": 4, "ws2": 4}
# user → (GPUs per job, minutes per job)
USERS = {"alice": (1, 240), "bob": (1, 30), "carol": (2, 60)}
QUEUE_DEPTH = 12


@dataclass
class Job:
    user: str
    host: str
    gpus: tuple[int, ...]
    ends: int


@dataclass
class Sim:
    fair: bool
    users: dict[str, tuple[int, int]]
    rng: random.Random
    jobs: list[Job] = field(default_factory=list)
    gpu_minutes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    busy_minutes: int = 0
    minutes: int = 0

    def views(self) -> list[HostView]:
        held = {(j.host, g): j.user for j in self.jobs for g in j.gpus}
        views = []
        for host, count in HOSTS.items():
            readings = tuple(
                GpuReading(index=i, uuid=f"GPU-{host}-{i}", util_pct=90.0 if (host, i) in held
                           else 0.0, mem_used_mib=30000.0 if (host, i) in held else 1.0,
                           mem_total_mib=81559.0, temp_c=50.0, power_w=300.0,
                           power_limit_w=700.0, fan_pct=None,
                           leased_by=f"run-{held[(host, i)]}" if (host, i) in held else None)
                for i in range(count))
            views.append(HostView(spec=HostSpec(name=host), state=HostState.ONLINE,
                                  sample=Sample(seq=self.minutes, time=float(self.minutes),
                                                gpus=readings)))
        return views

    def queue(self, user: str) -> list[Run]:
        gpus, _minutes = self.users[user]
        runs = []
        for k in range(QUEUE_DEPTH):
            runs.append(Run(id=f"r{user}{k:04d}", name="job", spec={"gpus": gpus},
                            state=RunState.QUEUED, user=user, seq=k, created_at=0.0,
                            queued_at=0.0))
        return runs

    def boards(self) -> dict[str, Board]:
        """What each host's lab board says now: leases by user, everyone's demand."""
        demand = tuple(Demand(u, gpus, QUEUE_DEPTH, 0.0) for u, (gpus, _m) in self.users.items())
        boards = {}
        for host in HOSTS:
            leases = tuple(LeaseHolder(f"GPU-{host}-{g}", j.user, None, None)
                           for j in self.jobs if j.host == host for g in j.gpus)
            boards[host] = Board(leases=leases, demand=demand)
        return boards

    def step(self) -> None:
        self.jobs = [j for j in self.jobs if j.ends > self.minutes]
        order = list(self.users)
        self.rng.shuffle(order)  # whose Labdeck looks first this minute
        for user in order:
            views = self.views()
            lab = None
            if self.fair:
                lab = lab_state(self.boards(), HOSTS, dict.fromkeys(HOSTS, user))
            for placement in plan(self.queue(user), views, lab=lab)[:8]:
                minutes = self.users[user][1]
                # Real jobs vary around their typical length.
                length = max(1, int(self.rng.uniform(0.7, 1.3) * minutes))
                self.jobs.append(Job(user, placement.host, placement.gpu_indices,
                                     self.minutes + length))
                views = self.views()
        for job in self.jobs:
            self.gpu_minutes[job.user] += len(job.gpus)
            self.busy_minutes += len(job.gpus)
        self.minutes += 1


def jain(values: list[float]) -> float:
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def simulate(fair: bool, users: dict[str, tuple[int, int]], minutes: int, seed: int
             ) -> tuple[float, float, dict[str, int]]:
    sim = Sim(fair, users, random.Random(seed))
    for _ in range(minutes):
        sim.step()
    shares = {u: sim.gpu_minutes[u] for u in users}
    utilisation = sim.busy_minutes / (sum(HOSTS.values()) * minutes)
    return jain([float(v) for v in shares.values()]), utilisation, shares


def measure(mode: str) -> list[dict[str, Any]]:
    from tests.bench.benchlib import pick

    minutes = pick(mode, 1440, 4320, 10080)  # a day, three days, a week
    seed = 11
    fair_j, fair_u, fair_shares = simulate(True, USERS, minutes, seed)
    fcfs_j, fcfs_u, fcfs_shares = simulate(False, USERS, minutes, seed)
    alone = {"alice": USERS["alice"]}
    _j, alone_u, _s = simulate(True, alone, min(minutes, 1440), seed)

    def split(shares: dict[str, int]) -> str:
        total = sum(shares.values()) or 1
        return ", ".join(f"{u} {100 * v / total:.0f} %" for u, v in shares.items())

    days = minutes / 1440
    return [
        figure("lab fairness: Jain's index of GPU-time, 3 users", fair_j, "",
               baseline=fcfs_j, baseline_label="first come, first served (today)",
               higher_is_better=True, target="≥ 0.95", min_value=0.95,
               note=f"{days:g} simulated days on 2×4 GPUs; GPU-time {split(fair_shares)} "
                    f"(first come, first served: {split(fcfs_shares)})"),
        figure("lab fairness: GPU utilisation while demand exists", 100 * fair_u, "%",
               baseline=100 * fcfs_u, baseline_label="first come, first served (today)",
               higher_is_better=True, target="≥ 95 %", min_value=95.0),
        figure("lab fairness: one user alone, GPUs used", 100 * alone_u, "%",
               higher_is_better=True, target="≥ 95 % (all 8 GPUs)", min_value=95.0,
               note="alice alone with continuous demand: nobody to leave a GPU to"),
    ]


if __name__ == "__main__":
    for row in measure("quick"):
        print(row)
