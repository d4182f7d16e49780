"""The lab summary's sums and idle calls: GPU-hours added over hosts, "held but idle"
counted from the later of the lease and the first idle sample, flagged past the limit."""

from __future__ import annotations

import time

from app.core.hosts.cluster import HostView
from app.core.queue.labsummary import IDLE_AFTER_S, idle_text, lab_summary
from ssh_backend.hostspec import HostSpec
from ssh_backend.labboard import Board, LeaseHolder, Usage
from ssh_backend.protocol import GpuReading, Sample
from ssh_backend.states import HostState


def view(name: str, utils: list[float]) -> HostView:
    readings = tuple(
        GpuReading(index=i, uuid=f"{name}-{i}", util_pct=u, mem_used_mib=1.0,
                   mem_total_mib=80.0, temp_c=40.0, power_w=70.0, power_limit_w=700.0,
                   fan_pct=None)
        for i, u in enumerate(utils))
    return HostView(spec=HostSpec(name=name), state=HostState.ONLINE,
                    sample=Sample(seq=1, time=time.time(), gpus=readings))


def test_gpu_hours_are_summed_over_hosts_per_user() -> None:
    boards = {"a": Board(usage=(Usage("alice", 2.0, 10.0), Usage("bob", 0.5, 0.5))),
              "b": Board(usage=(Usage("alice", 1.5, 4.0),))}
    found = lab_summary([view("a", [0.0]), view("b", [0.0])], boards)
    users = {u["user"]: (u["gpu_hours_day"], u["gpu_hours_week"]) for u in found["users"]}
    assert users == {"alice": (3.5, 14.0), "bob": (0.5, 0.5)}


def test_idle_holders_are_timed_from_the_lease_and_flagged_past_the_limit() -> None:
    now = time.time()
    boards = {"a": Board(leases=(
        LeaseHolder("a-0", "alice", "r1", now - 3 * 3600),  # idle for 2 h of its 3
        LeaseHolder("a-1", "bob", "r2", now - 300),  # idle since before bob took it
        LeaseHolder("a-2", "carol", "r3", now - 3600),  # busy: not listed
        LeaseHolder("a-3", "dana", "r4", now - 3600)))}  # 0 % but never timed
    starts = {0: now - 2 * 3600, 1: now - 5 * 3600, 3: None}
    found = lab_summary([view("a", [0.0, 0.0, 55.0, 0.0])], boards,
                        lambda host, index: starts.get(index))
    idle = {i["user"]: i for i in found["idle_holders"]}
    assert set(idle) == {"alice", "bob", "dana"}
    assert abs(idle["alice"]["idle_for_s"] - 2 * 3600) < 5 and idle["alice"]["long_idle"]
    assert abs(idle["bob"]["idle_for_s"] - 300) < 5 and not idle["bob"]["long_idle"]
    assert idle["dana"]["idle_for_s"] is None and not idle["dana"]["long_idle"]
    assert found["idle_after_min"] == IDLE_AFTER_S // 60
    assert idle_text(idle["alice"], 30) == "2 h 00 min — idle past 30 min"
    assert idle_text(idle["bob"], 30) == "5 min"
    assert idle_text(idle["dana"], 30) == "0 % now"
