"""Placement over host views built from the real protocol objects and the H100 recording."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.hosts.cluster import HostView
from app.core.queue.runs import Run, RunState
from app.core.queue.scheduler import Placement, Policy, explain, free_gpus, plan
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import GpuProcess, GpuReading, GpuStatic, Hello, Sample
from ssh_backend.states import HostState

RECORDING = Path(__file__).resolve().parents[3] / "shared/fixtures/nvidia-h100/nvml.json"
MIB = 2**20


def _recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDING.read_text())
    busy = next(r for r in data["trace"] if r["procs"] and r["util"]["gpu"] == 100)
    return {
        "name": data["name"],
        "total": data["idle"]["mem"]["total"] / MIB,  # 81559 MiB
        "idle_used": data["idle"]["mem"]["used"] / MIB,  # 480 MiB: NVML counts reserved
        "busy_used": busy["mem"]["used"] / MIB,
        "busy_pid": busy["procs"][0]["pid"],
        "busy_proc_mib": busy["procs"][0]["usedGpuMemory"] / MIB,
    }


H100 = _recorded()

def gpu(host: str, index: int, *, used: float = 0.0, procs: Sequence[GpuProcess] = (),
        leased_by: str | None = None, total: float | None = None) -> GpuReading:
    return GpuReading(
        index=index, uuid=f"GPU-{host}-{index}", util_pct=0.0, mem_used_mib=used,
        mem_total_mib=H100["total"] if total is None else total, temp_c=50.0,
        power_w=79.2, power_limit_w=700.0, fan_pct=None, processes=tuple(procs),
        leased_by=leased_by,
    )


def training(host: str, index: int, user: str = "bob") -> GpuReading:
    """A GPU as recorded while someone's PyTorch process trained on it."""
    proc = GpuProcess(pid=H100["busy_pid"], user=user, command="python train.py",
                      mem_mib=H100["busy_proc_mib"])
    return gpu(host, index, used=H100["busy_used"], procs=[proc])


def view(name: str, readings: Iterable[GpuReading] | int = 8,
         state: HostState = HostState.ONLINE) -> HostView:
    if isinstance(readings, int):
        readings = [gpu(name, i) for i in range(readings)]
    readings = tuple(readings)
    hello = Hello(
        protocol=1, agent_version="1", hostname=name, boot_id=f"boot-{name}",
        backend="nvml", backend_detail="NVML 13.580.159.04", simulated=False,
        gpus=tuple(GpuStatic(r.index, r.uuid, H100["name"], H100["total"], 700.0)
                   for r in readings),
    )
    return HostView(
        spec=HostSpec(name=name, hostname=name, agent=AgentOptions()), state=state,
        hello=hello, sample=Sample(seq=1, time=1000.0, gpus=readings),
        sample_received_at=1000.0,
    )


_seq = iter(range(1, 10**9))


def run(name: str, gpus: int = 1, *, user: str = "alice", priority: int = 0,
        queued_at: float = 1000.0, **spec: Any) -> Run:
    return Run(
        id=f"r-{name}", name=name, spec={"name": name, "gpus": gpus, **spec},
        state=RunState.QUEUED, user=user, priority=priority, created_at=queued_at,
        seq=next(_seq), queued_at=queued_at,
    )


def placed(placements: list[Placement]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {p.run_id.removeprefix("r-"): (p.host, p.gpu_indices) for p in placements}


# -- what counts as free --------------------------------------------------------------
def test_an_idle_h100_as_recorded_is_free_and_carries_its_uuid() -> None:
    h = view("h1", [gpu("h1", 0, used=H100["idle_used"]), gpu("h1", 1)])
    assert free_gpus(h) == [0, 1]
    (p,) = plan([run("a")], [h])
    assert p == Placement("r-a", "h1", (0,), ("GPU-h1-0",))


def test_a_gpu_with_anyones_process_is_never_chosen() -> None:
    h = view("h1", [training("h1", i, user="bob") for i in range(7)] + [gpu("h1", 7)])
    assert free_gpus(h) == [7]
    assert placed(plan([run("one"), run("two")], [h])) == {"one": ("h1", (7,))}
    # Even a process with tiny memory (under the threshold) makes the GPU busy.
    tiny = GpuProcess(pid=99, user="alice", command="python", mem_mib=10.0)
    assert free_gpus(view("h2", [gpu("h2", 0, used=10.0, procs=[tiny])])) == []
    why = explain(run("pair", 2), [h])
    assert why.startswith("needs 2 GPUs on one host; the most free on any online host is 1")
    assert f"used by bob (pid {H100['busy_pid']})" in why


def test_memory_at_or_over_the_threshold_is_busy_and_unknown_memory_too() -> None:
    unknown = dataclasses.replace(gpu("h1", 3), mem_used_mib=None)
    h = view("h1", [gpu("h1", 0, used=1024.0), gpu("h1", 1, used=1023.0),
                    gpu("h1", 2, used=5000.0), unknown])
    assert free_gpus(h) == [1]
    assert free_gpus(h, policy=Policy(mem_threshold_mib=6000)) == [0, 1, 2]
    assert "1024 MiB in use (threshold 1024 MiB)" in explain(run("two", 2), [h])


def test_leased_reserved_and_in_flight_gpus_are_not_chosen() -> None:
    h = view("h1", [gpu("h1", 0, leased_by="r-other"), gpu("h1", 1), gpu("h1", 2), gpu("h1", 3)])
    reserved = {("h1", 1)}
    in_flight = {("h1", 2)}
    assert free_gpus(h, reserved, in_flight) == [3]
    assert placed(plan([run("a"), run("b")], [h], reserved, in_flight)) == {"a": ("h1", (3,))}
    why = explain(run("b", 2), [h], reserved, in_flight)
    assert "leased by run r-other" in why and "reserved" in why and "in flight" in why
    # Reserved on another host does not matter here.
    assert free_gpus(h, {("h2", 3)}) == [1, 2, 3]


@pytest.mark.parametrize("state", [s for s in HostState if s is not HostState.ONLINE])
def test_a_host_that_is_not_online_offers_nothing(state: HostState) -> None:
    h = view("h1", 4, state=state)
    assert free_gpus(h) == []
    assert plan([run("a")], [h]) == []
    assert explain(run("a"), [h]) == f"no eligible host is online (h1: {state.label})"


def test_a_multi_gpu_run_is_never_split_across_hosts() -> None:
    a = view("a", [gpu("a", 0), training("a", 1)])
    b = view("b", [training("b", 0), gpu("b", 1)])
    assert plan([run("pair", 2)], [a, b]) == []
    assert explain(run("pair", 2), [a, b]).startswith(
        "needs 2 GPUs on one host; the most free on any online host is 1 (a: GPU 1 used by bob")
    c = view("c", 8)
    assert placed(plan([run("pair", 2)], [a, b, c])) == {"pair": ("c", (0, 1))}


def test_priority_comes_first() -> None:
    h = view("h1", [gpu("h1", 0)] + [training("h1", i) for i in (1, 2, 3)])
    queue = [run("early-low"), run("late-high", priority=5), run("later-mid", priority=1)]
    assert placed(plan(queue, [h])) == {"late-high": ("h1", (0,))}


def test_fifo_within_a_user_and_priority() -> None:
    h = view("h1", 2)
    queue = [run("first"), run("second"), run("third")]
    result = plan(list(reversed(queue)), [h])  # input order does not matter, seq does
    assert [p.run_id for p in result] == ["r-first", "r-second"]


def test_fair_share_alternates_between_users_and_counts_active_runs() -> None:
    h = view("h1", 4)
    queue = [run(f"a{i}", user="alice") for i in range(4)]
    queue += [run(f"b{i}", user="bob") for i in range(4)]
    order = [p.run_id for p in plan(queue, [h])]
    assert order == ["r-a0", "r-b0", "r-a1", "r-b1"]
    # Alice already has two runs going: bob goes first until they are even.
    order = [p.run_id for p in plan(queue, [h], active_per_user={"alice": 2})]
    assert order == ["r-b0", "r-b1", "r-a0", "r-b2"]
    # Priority still beats fair share.
    queue.append(run("a-urgent", user="alice", priority=1))
    assert plan(queue, [h], active_per_user={"alice": 9})[0].run_id == "r-a-urgent"


def test_pack_fills_the_busiest_host_that_fits_and_spread_the_emptiest() -> None:
    hosts = [
        view("two-free", [training("two-free", i) for i in range(6)]
             + [gpu("two-free", 6), gpu("two-free", 7)]),
        view("all-free", 8),
        view("four-free", [training("four-free", i) for i in range(4)]
             + [gpu("four-free", i) for i in range(4, 8)]),
    ]
    assert placed(plan([run("one")], hosts)) == {"one": ("two-free", (6,))}
    assert placed(plan([run("three", 3)], hosts)) == {"three": ("four-free", (4, 5, 6))}
    spread = Policy(pack=False)
    assert placed(plan([run("one")], hosts, policy=spread)) == {"one": ("all-free", (0,))}
    # Packing keeps the whole machine for the 8-GPU run that comes after small ones.
    queue = [run("s1"), run("s2"), run("s3"), run("big", 8)]
    assert placed(plan(queue, hosts))["big"] == ("all-free", tuple(range(8)))
    assert "big" not in placed(plan(queue, hosts, policy=spread))


def test_pinned_gpus_exactly_or_wait() -> None:
    h = view("h1", [gpu("h1", 0), gpu("h1", 1), gpu("h1", 2), training("h1", 3)])
    other = view("h2", 8)
    pinned = run("pin", 2, hosts=["h1"], pin_gpus=[2, 1])
    assert placed(plan([pinned], [h, other])) == {"pin": ("h1", (1, 2))}
    blocked = run("blocked", 2, hosts=["h1"], pin_gpus=[2, 3])
    assert plan([blocked], [h, other]) == []
    assert explain(blocked, [h, other]) == (
        f"pinned to GPU 2, 3 on h1; GPU 3 used by bob (pid {H100['busy_pid']})")
    assert explain(pinned, [h, other]).endswith("which are free: it starts at the next dispatch")
    bad = run("bad", 2, hosts=["h1", "h2"], pin_gpus=[0, 1])
    assert plan([bad], [h, other]) == []
    assert "exactly one host" in explain(bad, [h, other])


def test_host_names_and_tags_constrain_placement() -> None:
    hosts = [view("a", 2), view("b", 2), view("c", 2)]
    tags = {"a": ["a100"], "b": ["h100", "nvlink"], "c": ["h100"]}
    named = run("named", hosts=["c"])
    tagged = run("tagged", 2, host_tags=["h100", "nvlink"])
    result = placed(plan([named, tagged], hosts, host_tags=tags))
    assert result == {"named": ("c", (0,)), "tagged": ("b", (0, 1))}
    assert plan([run("x", host_tags=["v100"])], hosts, host_tags=tags) == []
    # Impossible as the lab stands: said as such, never "not placed yet".
    assert explain(run("x", host_tags=["v100"]), hosts, host_tags=tags) == (
        "cannot start as the lab stands: it wants the host tags v100, which no host has")
    assert explain(run("y", hosts=["zz"]), hosts).startswith(
        "cannot start as the lab stands: it names no known host (zz;")
    assert explain(run("z", 4, hosts=["a"]), hosts) == (
        "cannot start as the lab stands: it needs 4 GPUs on one host; the largest "
        "eligible host (a) has 2")
    # A bigger host that is offline now: not impossible, only not online.
    big = view("big", 8, state=HostState.OFFLINE)
    assert explain(run("w", 4), [*hosts, big]) == (
        "needs 4 GPUs on one host; the largest eligible online host has 2")


def test_a_big_waiting_run_does_not_block_smaller_ones_behind_it() -> None:
    h = view("h1", [gpu("h1", i) for i in range(3)] + [training("h1", 3)])
    queue = [run("big", 4), run("small1"), run("small2", priority=-1)]
    assert placed(plan(queue, [h])) == {"small1": ("h1", (0,)), "small2": ("h1", (1,))}
    assert explain(run("big", 4), [h]).startswith(
        "needs 4 GPUs on one host; the most free on any online host is 3")


def test_a_run_that_waited_long_drains_the_host_closest_to_fitting_it() -> None:
    near = view("near", [gpu("near", i) for i in range(3)] + [training("near", 3)])
    far = view("far", [gpu("far", 0)] + [training("far", i) for i in (1, 2, 3)])
    policy = Policy(drain_after_s=600)
    queue = [run("big", 4, queued_at=0.0), run("s1", queued_at=500.0),
             run("s2", queued_at=500.0)]
    # Not starving yet: small runs backfill, packing onto the busier host first.
    assert placed(plan(queue, [near, far], policy=policy, now=500.0)) == {
        "s1": ("far", (0,)), "s2": ("near", (0,))}
    # Starving: "near" is held for it; only the other host's GPU is used meanwhile.
    assert placed(plan(queue, [near, far], policy=policy, now=700.0)) == {
        "s1": ("far", (0,))}
    assert plan(queue[:1] + queue[2:], [near], policy=policy, now=700.0) == []
    # Without a clock, or with draining off, it never holds anything back.
    assert len(plan(queue, [near, far], policy=policy)) == 2
    assert len(plan(queue, [near, far], policy=Policy(drain_after_s=None), now=1e9)) == 2
    # A run too big for any host does not hold a host hostage.
    huge = run("huge", 16, queued_at=0.0)
    assert len(plan([huge, *queue[1:]], [near, far], policy=policy, now=700.0)) == 2
    # Only the first starving run drains (one held host per plan), so "far" stays usable.
    big2 = run("big2", 4, queued_at=0.0)
    assert placed(plan([*queue, big2], [near, far], policy=policy, now=700.0)) == {
        "s1": ("far", (0,))}
    # A starving pinned run holds just its GPUs.
    pinned = run("pinned", 2, hosts=["near"], pin_gpus=[2, 3], queued_at=0.0)
    assert placed(plan([pinned, *queue[1:]], [near], policy=policy, now=700.0)) == {
        "s1": ("near", (0,)), "s2": ("near", (1,))}
    assert placed(plan([pinned, *queue[1:], run("s3")], [near], policy=policy, now=700.0)
                  ) == {"s1": ("near", (0,)), "s2": ("near", (1,))}


def test_min_free_memory_filters_smaller_gpus() -> None:
    h = view("mixed", [gpu("mixed", 0, total=24576.0), gpu("mixed", 1)])
    assert placed(plan([run("big-mem", min_free_mem_mib=40000)], [h])) == {
        "big-mem": ("mixed", (1,))}
    assert plan([run("huge-mem", min_free_mem_mib=90000)], [h]) == []
    assert "needs 90000 MiB" in explain(run("huge-mem", min_free_mem_mib=90000), [h])


def test_enough_free_but_taken_by_runs_ahead_is_explained() -> None:
    h = view("h1", 1)
    assert explain(run("b"), [h]).startswith("1 GPUs are free on h1; runs ahead of it")


# -- properties over random clusters and queues -----------------------------------------
Cluster = tuple[list[HostView], set[tuple[str, int]], set[tuple[str, int]],
                dict[str, list[str]], set[tuple[str, int]]]


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    """Random hosts, plus the GPUs that are free by construction (the test's own oracle)."""
    hosts, reserved, in_flight, tags, free = [], set(), set(), {}, set()
    for h in range(draw(st.integers(0, 5))):
        name = f"h{h}"
        readings = []
        state = draw(st.sampled_from([HostState.ONLINE] * 3 + [HostState.STALE,
                                                                HostState.OFFLINE]))
        for i in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(["idle", "idle", "idle", "proc", "mem", "lease",
                                         "unknown", "reserved", "flight"]))
            if kind == "proc":
                readings.append(training(name, i))
            elif kind == "mem":
                readings.append(gpu(name, i, used=draw(st.floats(1024, 81559))))
            elif kind == "lease":
                readings.append(gpu(name, i, leased_by="r-x"))
            elif kind == "unknown":
                readings.append(dataclasses.replace(gpu(name, i), mem_used_mib=None))
            else:
                readings.append(gpu(name, i, used=draw(st.floats(0, 1023))))
                if kind == "reserved":
                    reserved.add((name, i))
                elif kind == "flight":
                    in_flight.add((name, i))
                elif state is HostState.ONLINE:
                    free.add((name, i))
        hosts.append(view(name, readings, state=state))
        tags[name] = draw(st.lists(st.sampled_from(["a", "b"]), unique=True))
    return hosts, reserved, in_flight, tags, free


@st.composite
def queues(draw: st.DrawFn) -> list[Run]:
    out = []
    for k in range(draw(st.integers(0, 25))):
        spec: dict[str, Any] = {}
        if draw(st.booleans()):
            spec["hosts"] = draw(st.lists(st.sampled_from(["h0", "h1", "h2"]), max_size=2))
        if draw(st.integers(0, 4)) == 0:
            spec["host_tags"] = draw(st.lists(st.sampled_from(["a", "b"]), max_size=1))
        gpus = draw(st.integers(0, 9))
        if draw(st.integers(0, 5)) == 0:
            spec = {"hosts": [f"h{draw(st.integers(0, 2))}"]}
            spec["pin_gpus"] = draw(st.lists(st.integers(0, 7), unique=True, max_size=3))
            gpus = len(spec["pin_gpus"])
        out.append(run(f"q{k}", gpus, user=draw(st.sampled_from(["al", "bo", "cy"])),
                       priority=draw(st.integers(-1, 1)),
                       queued_at=draw(st.floats(0, 2000)), **spec))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), queue=queues(), pack=st.booleans(), now=st.none() | st.just(2500.0))
def test_plan_only_ever_uses_free_gpus_once_and_whole(
    cluster: Cluster, queue: list[Run], pack: bool, now: float | None
) -> None:
    hosts, reserved, in_flight, tags, truly_free = cluster
    policy = Policy(pack=pack, drain_after_s=1000.0)
    result = plan(queue, hosts, reserved, in_flight, policy, host_tags=tags, now=now)
    runs = {r.id: r for r in queue}
    used: set[tuple[str, int]] = set()
    assert len({p.run_id for p in result}) == len(result)
    for p in result:
        r = runs[p.run_id]
        assert len(p.gpu_indices) == r.spec["gpus"] == len(p.gpu_uuids)
        keys = {(p.host, i) for i in p.gpu_indices}
        assert keys <= truly_free
        assert len(keys) == len(p.gpu_indices) and not keys & used
        used |= keys
        assert p.gpu_uuids == tuple(f"GPU-{p.host}-{i}" for i in p.gpu_indices)
        if r.spec.get("hosts"):
            assert p.host in r.spec["hosts"]
        assert set(r.spec.get("host_tags", ())) <= set(tags[p.host])
        if r.spec.get("pin_gpus"):
            assert sorted(p.gpu_indices) == sorted(r.spec["pin_gpus"])
    # Without draining, no GPU stays idle while an unconstrained 1-GPU run waits.
    if now is None:
        left = [r for r in queue if r.id not in {p.run_id for p in result}]
        for r in left:
            if r.spec["gpus"] == 1 and not r.spec.get("hosts") and not r.spec.get(
                    "host_tags"):
                assert truly_free <= used


def test_the_lab_quota_limits_placement_and_is_the_reason_given() -> None:
    from app.core.queue.fairshare import LabState

    hosts = [view("a", 4)]
    # The lab policy lets alice hold 2 GPUs on "a"; she holds 1 there already.
    lab = LabState(me={"a": "alice"}, quota={"a": (2, 1)})
    assert placed(plan([run("two", 2)], hosts, lab=lab)) == {}
    assert placed(plan([run("one", 1), run("one-more", 1)], hosts, lab=lab)) == {
        "one": ("a", (0,))}
    assert explain(run("two", 2), hosts, lab=lab) == (
        "quota: 1 GPU in use on a (lab policy allows 2 per user)")
    assert explain(run("three", 3), hosts, lab=lab) == (
        "cannot start as the lab stands: it needs 3 GPUs on one host; the lab policy "
        "allows at most 2 per user on a, the roomiest host")
    # Without the quota the same runs are placed.
    assert placed(plan([run("three", 3)], hosts)) == {"three": ("a", (0, 1, 2))}
