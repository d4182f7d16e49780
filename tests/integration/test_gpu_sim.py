"""The simulated GPU backend: replay of the recording, and reaction to real processes."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import gpu_sim  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "nvidia-h100" / "nvml.json"
TRACE = json.loads(Path(gpu_sim.TRACE_FILE).read_text())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend(count: int = 4, host_id: str | None = None) -> tuple[gpu_sim.SimBackend, Clock]:
    clock = Clock()
    host = host_id or f"sim-{uuid.uuid4().hex[:8]}"
    return gpu_sim.SimBackend(count, host, clock=clock), clock


def claim(host_id: str, gpus: str, argv: list[str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LABDECK_SIM_GPUS": gpus, "LABDECK_SIM_HOST": host_id}
    return subprocess.Popen(argv or ["sleep", "60"], env=env)


def test_committed_trace_is_derived_from_the_recording() -> None:
    if not FIXTURE.exists():
        pytest.skip(f"recording not found at {FIXTURE}")
    spec = importlib.util.spec_from_file_location(
        "make_sim_trace", ROOT / "tests" / "harness" / "make_sim_trace.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render(json.loads(FIXTURE.read_text()))
    assert Path(gpu_sim.TRACE_FILE).read_text() == expected


def test_uuids_are_stable_distinct_and_well_formed() -> None:
    a = [gpu_sim.sim_uuid("lab-1", i) for i in range(4)]
    assert a == [gpu_sim.sim_uuid("lab-1", i) for i in range(4)]
    assert len({*a, gpu_sim.sim_uuid("lab-2", 0)}) == 5
    pattern = r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert all(re.fullmatch(pattern, u) for u in a)


def test_idle_gpus_replay_idle_values_with_per_gpu_variation() -> None:
    sim, clock = backend(host_id="lab-ws1")  # fixed: the per-GPU offsets derive from it
    assert [s["name"] for s in sim.statics] == ["NVIDIA H100 80GB HBM3 (simulated)"] * 4
    powers = []
    for _ in range(20):
        clock.now += 0.5
        for gpu in sim.read():
            assert gpu["util_pct"] == 0 and gpu["mem_used_mib"] == 0 and gpu["processes"] == []
            assert 47 <= gpu["temp_c"] <= 54
            assert 70 < gpu["power_w"] < 90
            assert gpu["fan_pct"] is None and gpu["power_limit_w"] == 700
        powers.append([g["power_w"] for g in sim.read()])
    per_gpu = [sum(p[i] for p in powers) / len(powers) for i in range(4)]
    gaps = [abs(a - b) for i, a in enumerate(per_gpu) for b in per_gpu[i + 1:]]
    assert min(gaps) > 0.3, f"GPUs should not look identical: {per_gpu}"


def test_a_claiming_process_replays_the_training_run() -> None:
    host = f"sim-{uuid.uuid4().hex[:8]}"
    sim, clock = backend(host_id=host)
    child = claim(host, "1,3")
    try:
        gpus = sim.read()
        train = TRACE["train"]
        assert gpus[0]["processes"] == [] and gpus[2]["processes"] == []
        for index in (1, 3):
            [proc] = gpus[index]["processes"]
            assert proc["pid"] == child.pid and proc["command"] == "sleep 60"
            assert proc["user"] == pwd.getpwuid(os.getuid()).pw_name
            assert proc["mem_mib"] == train["proc_mem_mib"][0]
        clock.now += 2.0
        gpu = sim.read()[1]
        assert gpu["processes"][0]["mem_mib"] == 1032.0
        assert gpu["util_pct"] < 50, "the recording loads for ~5 s before computing"
        clock.now += 10.0
        busy = sim.read()
        for index in (1, 3):
            assert busy[index]["util_pct"] >= 99
            assert busy[index]["power_w"] > 500 and busy[index]["temp_c"] >= 60
            assert busy[index]["mem_used_mib"] == pytest.approx(3760.8, abs=0.1)
            assert busy[index]["processes"][0]["mem_mib"] == 3752.0
        # Much later the steady phase is still replayed, without jumps.
        previous = None
        for _ in range(400):
            clock.now += 0.25
            gpu = sim.read()[1]
            assert gpu["util_pct"] >= 98 and gpu["power_w"] > 500
            if previous is not None:
                assert abs(gpu["temp_c"] - previous) <= 2
            previous = gpu["temp_c"]
    finally:
        child.kill()
        child.wait()
    clock.now += 1.5  # past the next /proc scan
    cooling = sim.read()[1]
    assert cooling["processes"] == [] and cooling["util_pct"] == 0
    assert cooling["power_w"] > 200, "cools down from the recorded after-run reading"
    clock.now += 120.0
    assert sim.read()[1]["power_w"] < 90


def test_other_hosts_processes_are_ignored() -> None:
    sim, _ = backend(host_id="mine")
    child = claim(f"other-{uuid.uuid4().hex[:8]}", "0")
    try:
        assert all(g["processes"] == [] for g in sim.read())
    finally:
        child.kill()
        child.wait()


def test_launcher_and_job_show_as_one_process() -> None:
    host = f"sim-{uuid.uuid4().hex[:8]}"
    sim, _ = backend(host_id=host)
    # sh stays the parent of sleep; both carry the environment, only the job is listed.
    child = claim(host, "0", ["sh", "-c", "sleep 60; exit 0"])
    try:
        for _ in range(50):
            if subprocess.run(["pgrep", "-P", str(child.pid)], capture_output=True,
                              check=False).stdout:
                break
            subprocess.run(["sleep", "0.02"], check=False)
        [proc] = sim.read()[0]["processes"]
        assert proc["pid"] != child.pid and proc["command"] == "sleep 60"
    finally:
        subprocess.run(["pkill", "-P", str(child.pid)], check=False)
        child.kill()
        child.wait()


def test_gpu_list_parsing_ignores_junk() -> None:
    assert gpu_sim.parse_gpu_list("0, 2,x,9,-1,", 4) == {0, 2}
