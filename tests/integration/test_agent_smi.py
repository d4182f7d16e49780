"""The real agent.py on the nvidia-smi backend, against the fake nvidia-smi."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
from agent_process import FAKE_SMI_DIR, AgentProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ssh_backend" / "agent"))
import gpu_smi

from ssh_backend.protocol import AgentError, Hello, Sample

FAKE_SMI = str(FAKE_SMI_DIR / "nvidia-smi")
SMI = ("--backend", "smi", "--interval", "0.1", "--nvidia-smi", FAKE_SMI)
UUID0 = "GPU-a985d89e-47d5-b413-d80b-3fb47274ecd8"


def nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return False
    pynvml.nvmlShutdown()
    return True


def smi_children(agent_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(agent_pid)], capture_output=True, text=True,
                         check=False).stdout
    return [int(pid) for pid in out.split()]


def test_recorded_values_flow_through() -> None:
    with AgentProcess(*SMI, env={"FAKE_SMI_GPUS": "2"}) as agent:
        _, hello = agent.next(Hello)
        assert hello.backend == "smi" and not hello.simulated and not hello.needs_reboot
        assert "driver 580.159.04" in hello.backend_detail
        assert [g.index for g in hello.gpus] == [0, 1]
        assert hello.gpus[0].uuid == UUID0 and hello.gpus[0].name == "NVIDIA H100 80GB HBM3"
        assert hello.gpus[0].memory_total_mib == 81559.0 and hello.gpus[0].power_limit_w == 700
        _, sample = agent.next(Sample)
        gpu = sample.gpus[0]
        assert (gpu.util_pct, gpu.mem_used_mib, gpu.mem_total_mib, gpu.temp_c) == (
            0.0, 0.0, 81559.0, 50.0)
        assert gpu.power_w == 79.26 and gpu.power_limit_w == 700.0
        assert gpu.fan_pct is None, "[N/A] is missing, never 0"
        assert gpu.processes == ()


def test_processes_carry_owner_and_command() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        env = {"FAKE_SMI_GPUS": "2", "FAKE_SMI_APPS": f"{child.pid}:1032:1"}
        with AgentProcess(*SMI, env=env) as agent:
            agent.next(Hello)
            gpu = agent.next(Sample)[1].gpus[1]
            [proc] = gpu.processes
            assert proc.pid == child.pid and proc.mem_mib == 1032.0
            assert proc.user == pwd.getpwuid(os.getuid()).pw_name
            assert proc.command == "sleep 60"
            assert gpu.util_pct == 100.0 and gpu.mem_used_mib == 1040.0
    finally:
        child.kill()
        child.wait()


def test_found_on_path_and_stream_child_ends_with_the_agent() -> None:
    env = {"PATH": f"{FAKE_SMI_DIR}{os.pathsep}{os.environ['PATH']}"}
    with AgentProcess("--backend", "smi", "--interval", "0.1", env=env) as agent:
        assert agent.next(Hello)[1].backend == "smi"
        agent.next(Sample)
        assert smi_children(agent.proc.pid), "the -lms stream runs as a child"
        agent.command("configure", interval=0.3)  # restarts the stream with the new rate
        agent.next(Sample)
        first, _ = agent.next(Sample)
        for _ in range(4):
            last, sample = agent.next(Sample)
        assert 0.2 < (last - first) / 4 < 0.6 and sample.gpus[0].temp_c == 50.0
        pid = agent.proc.pid
        children = smi_children(pid)
        agent.close_stdin()
        assert agent.wait(timeout=3) == 0
    for child in children:
        deadline = time.monotonic() + 3
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists(), "nvidia-smi outlived the agent"


def test_auto_falls_back_to_smi_when_nvml_is_unavailable() -> None:
    env = {"PATH": f"{FAKE_SMI_DIR}{os.pathsep}{os.environ['PATH']}"}
    with AgentProcess("--backend", "auto", "--interval", "0.1", env=env) as agent:
        hello = agent.next(Hello)[1]
        assert hello.backend == ("nvml" if nvml_works() else "smi")


def test_auto_without_any_gpu_tool_reports_none(tmp_path: Path) -> None:
    if nvml_works():
        pytest.skip("a real GPU host: NVML answers, there is nothing to fall back from")
    with AgentProcess("--backend", "auto", env={"PATH": str(tmp_path)}) as agent:
        hello = agent.next(Hello)[1]
        assert hello.backend == "none" and hello.gpus == ()
        assert "nvidia-smi not found" in hello.backend_detail


def test_driver_mismatch_needs_reboot() -> None:
    with AgentProcess(*SMI, env={"FAKE_SMI_MODE": "mismatch"}) as agent:
        _, hello = agent.next(Hello)
        assert hello.needs_reboot and hello.backend == "smi" and hello.gpus == ()
        assert "Driver/library version mismatch" in hello.backend_detail
        assert agent.next(Sample)[1].gpus == ()


def test_garbage_lines_are_skipped_with_one_error() -> None:
    with AgentProcess(*SMI, env={"FAKE_SMI_MODE": "garbage"}) as agent:
        _, hello = agent.next(Hello)
        assert [g.uuid for g in hello.gpus] == [UUID0]
        _, error = agent.next(AgentError)
        assert "unreadable nvidia-smi line skipped" in error.message and not error.fatal
        errors = 0
        for _ in range(10):
            _, sample = agent.next(Sample)
            assert sample.gpus[0].temp_c == 50.0
        while not agent.messages.empty():
            errors += isinstance(agent.messages.get()[1], AgentError)
        assert errors == 0, "repeated garbage is not reported on every sample"
        assert agent.proc.poll() is None


def test_explicit_smi_missing_says_why(tmp_path: Path) -> None:
    args = ("--backend", "smi", "--nvidia-smi", str(tmp_path / "nvidia-smi"))
    with AgentProcess(*args) as agent:
        hello = agent.next(Hello)[1]
        assert hello.backend == "none" and "nvidia-smi not found" in hello.backend_detail
        assert "smi backend unavailable" in agent.next(AgentError)[1].message


def pids_on(readings: list[dict], index: int) -> list[int]:
    return [p["pid"] for p in readings[index]["processes"]]


def test_a_sample_never_waits_for_the_process_query(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    monkeypatch.setenv("FAKE_SMI_GPUS", "2")
    monkeypatch.setenv("FAKE_SMI_APPS", f"{first.pid}:1032:1")
    backend = gpu_smi.SmiBackend(0.1, smi=FAKE_SMI)
    try:
        assert pids_on(backend.read(), 1) == [first.pid], "the first sample knows who runs"
        # From now on --query-compute-apps takes 1.5 s and names the other process.
        monkeypatch.setenv("FAKE_SMI_APPS_DELAY_S", "1.5")
        monkeypatch.setenv("FAKE_SMI_APPS", f"{second.pid}:1032:1")
        asked = time.monotonic()
        backend.request_process_refresh()
        slowest, pids = 0.0, [first.pid]
        while pids != [second.pid] and time.monotonic() - asked < 8:
            started = time.perf_counter()
            readings = backend.read()
            slowest = max(slowest, time.perf_counter() - started)
            pids = pids_on(readings, 1)
            assert pids in ([first.pid], [second.pid])
            time.sleep(0.02)
        assert pids == [second.pid], "the slow query's answer arrives"
        assert time.monotonic() - asked >= 1.4, "the query really was slow"
        assert slowest < 0.1, f"a sample waited {slowest:.3f} s for the process query"
    finally:
        backend.close()
        for child in (first, second):
            child.kill()
            child.wait()


def test_a_new_process_shows_when_gpu_memory_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["sleep", "60"])
    monkeypatch.setenv("FAKE_SMI_GPUS", "2")
    backend = gpu_smi.SmiBackend(0.1, smi=FAKE_SMI)
    try:
        assert pids_on(backend.read(), 1) == []
        # The process allocates 1 GiB on GPU 1; the restarted stream sees the memory move,
        # which must trigger a process query well before the periodic one.
        monkeypatch.setenv("FAKE_SMI_APPS", f"{child.pid}:1032:1")
        changed = time.monotonic()
        backend.set_interval(0.2)
        while not pids_on(backend.read(), 1) and time.monotonic() - changed < 6:
            time.sleep(0.05)
        took = time.monotonic() - changed
        assert pids_on(backend.read(), 1) == [child.pid]
        assert took < gpu_smi.APPS_EVERY_S - 1, f"found after {took:.1f} s"
    finally:
        backend.close()
        child.kill()
        child.wait()
