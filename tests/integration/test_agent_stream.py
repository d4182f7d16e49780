"""The real agent.py as a subprocess: hello, the sample stream, commands, tails of a
run's files, exit on EOF."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ssh_backend.agent_bundle import build_bundle
from ssh_backend.protocol import AgentError, Hello, Pong, Sample, TailChunk
from tests.harness.agent_process import AgentProcess
from tests.harness.runhost import wait_until

SIM = ("--backend", "sim", "--sim-gpus", "4", "--interval", "0.1")
RUN = "tail-run-1"


def test_hello_then_samples_at_the_interval() -> None:
    with AgentProcess(*SIM, "--version", "v-test") as agent:
        _, hello = agent.next(Hello)
        assert hello.backend == "sim" and hello.simulated and not hello.needs_reboot
        assert hello.agent_version == "v-test"
        assert len(hello.gpus) == 4
        assert len({g.uuid for g in hello.gpus}) == 4
        assert all(g.name == "NVIDIA H100 80GB HBM3 (simulated)" for g in hello.gpus)
        assert hello.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        times, seqs = [], []
        for _ in range(11):
            at, sample = agent.next(Sample)
            times.append(at)
            seqs.append(sample.seq)
            assert [g.uuid for g in sample.gpus] == [g.uuid for g in hello.gpus]
            assert abs(sample.time - time.time()) < 5
        assert seqs == list(range(seqs[0], seqs[0] + 11))
        rate = (times[-1] - times[0]) / 10
        assert 0.07 < rate < 0.2, rate


def test_configure_changes_the_rate_and_is_clamped() -> None:
    with AgentProcess(*SIM) as agent:
        agent.next(Hello)
        agent.next(Sample)
        agent.command("configure", interval=0.5)
        agent.next(Sample)  # one may already be on its way
        first, _ = agent.next(Sample)
        second, _ = agent.next(Sample)
        assert 0.35 < second - first < 0.8
        agent.command("configure", interval=0.001)  # clamped to 0.1 s
        agent.next(Sample)
        start, _ = agent.next(Sample)
        for _ in range(5):
            end, _ = agent.next(Sample)
        assert 0.07 < (end - start) / 5 < 0.2


def test_ping_pong_and_bad_commands_keep_it_alive() -> None:
    with AgentProcess(*SIM) as agent:
        agent.next(Hello)
        agent.command("ping", id=41)
        assert agent.next(Pong)[1].id == 41
        for junk in (b"not json\n", b"[1]\n", b'{"type":"reboot"}\n', b'{"type":"ping"}\n',
                     b'{"type":"configure","interval":"fast"}\n', b"\xff\xfe\n"):
            agent.send(junk)
            _, error = agent.next(AgentError)
            assert "bad command" in error.message and not error.fatal
        agent.command("ping", id=42)
        assert agent.next(Pong)[1].id == 42
        agent.next(Sample)


def test_stdin_eof_ends_the_agent_promptly() -> None:
    with AgentProcess("--backend", "sim", "--interval", "30") as agent:
        agent.next(Hello)
        agent.next(Sample)
        started = time.monotonic()
        agent.close_stdin()
        assert agent.wait(timeout=2) == 0
        assert time.monotonic() - started < 2


def test_sigterm_exits_zero() -> None:
    with AgentProcess("--backend", "sim", "--interval", "30") as agent:
        agent.next(Hello)
        agent.next(Sample)
        agent.proc.terminate()
        assert agent.wait(timeout=2) == 0


def test_shutdown_command_exits_zero() -> None:
    with AgentProcess(*SIM) as agent:
        agent.next(Hello)
        agent.command("shutdown")
        assert agent.wait(timeout=2) == 0


def test_backend_none_reports_no_gpus() -> None:
    with AgentProcess("--backend", "none", "--interval", "0.1") as agent:
        _, hello = agent.next(Hello)
        assert hello.backend == "none" and hello.gpus == () and not hello.needs_reboot
        assert agent.next(Sample)[1].gpus == ()


def test_version_defaults_to_the_bundle_hash(tmp_path: Path) -> None:
    bundle = build_bundle()
    for name, content in bundle.files.items():
        (tmp_path / name).write_bytes(content)
    with AgentProcess("--backend", "none", script=tmp_path / "agent.py") as agent:
        assert agent.next(Hello)[1].agent_version == bundle.version


def find_python38() -> str | None:
    """A working Python 3.8 interpreter, the oldest the agent supports, if one is here."""
    candidates = [shutil.which("python3.8"), *map(str, Path.home().glob(
        ".pyenv/versions/3.8*/bin/python3.8"))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True,
                                        check=False).returncode == 0:
            return candidate
    return None


PY38 = find_python38()


@pytest.mark.skipif(PY38 is None, reason="no Python 3.8 interpreter here")
def test_agent_runs_on_python_38() -> None:
    assert PY38
    with AgentProcess(*SIM, python=PY38, env={"PYTHONPATH": ""}) as agent:
        assert agent.next(Hello)[1].backend == "sim"
        agent.next(Sample)
        agent.command("ping", id=1)
        agent.next(Pong)
        agent.close_stdin()
        assert agent.wait(timeout=2) == 0
    fake_smi = str(Path(__file__).resolve().parents[1] / "harness" / "bin" / "nvidia-smi")
    smi = ("--backend", "smi", "--interval", "0.1", "--nvidia-smi", fake_smi)
    with AgentProcess(*smi, python=PY38, env={"PYTHONPATH": ""}) as agent:
        assert agent.next(Hello)[1].backend == "smi"
        assert agent.next(Sample)[1].gpus[0].temp_c == 50.0


@pytest.mark.slow
def test_sim_shows_a_real_process_on_its_gpu() -> None:
    host_id = f"test-{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "sim-worker"],
        env={**os.environ, "LABDECK_SIM_GPUS": "1", "LABDECK_SIM_HOST": host_id},
    )
    try:
        with AgentProcess(*SIM, "--sim-host-id", host_id) as agent:
            agent.next(Hello)
            deadline = time.monotonic() + 12
            busy = None
            while time.monotonic() < deadline:
                sample = agent.next(Sample)[1]
                gpu0, gpu1 = sample.gpus[0], sample.gpus[1]
                assert gpu0.processes == () and gpu0.util_pct == 0
                if gpu1.processes:
                    [proc] = gpu1.processes
                    assert proc.pid == child.pid
                    assert proc.user == pwd.getpwuid(os.getuid()).pw_name
                    assert proc.command and "time.sleep(60) sim-worker" in proc.command
                    assert gpu1.mem_used_mib and gpu1.mem_used_mib > 0
                if gpu1.util_pct and gpu1.util_pct >= 90:
                    busy = sample
                    break
            assert busy, "GPU 1 never reached the recorded training utilisation"
            # Power is still ramping when utilisation first peaks (as recorded).
            assert busy.gpus[1].power_w and busy.gpus[1].power_w > 2 * (busy.gpus[0].power_w or 0)
            assert busy.gpus[1].mem_used_mib and busy.gpus[1].mem_used_mib > 3000
            assert (busy.gpus[1].temp_c or 0) > (busy.gpus[0].temp_c or 0)
    finally:
        child.kill()
        child.wait()


def test_agent_process_streams_tails_that_decode(tmp_path: Path) -> None:
    """watch/unwatch answered with tail messages the app decodes (agent/tails.py in-process
    is tests/unit/test_tails.py)."""
    home = tmp_path
    run_dir = home / ".labdeck" / "runs" / RUN
    run_dir.mkdir(parents=True)
    (run_dir / "output.log").write_bytes(b"hello\n")
    (run_dir / "metrics.jsonl").write_bytes(json.dumps(
        {"t": 1.0, "step": 0, "m": {"loss": float("nan")}}).encode() + b"\n")
    args = ("--backend", "sim", "--sim-gpus", "1", "--interval", "0.2")
    with AgentProcess(*args, env={"HOME": str(home)}) as agent:
        agent.command("watch", run_id=RUN, offsets={"output.log": 1})
        got: dict[str, TailChunk] = {}

        def both() -> bool:
            _at, chunk = agent.next(TailChunk, timeout=5)
            got[chunk.source] = chunk
            return len(got) == 2

        wait_until(both, 10, "a chunk of each file")
        assert got["output.log"].data == b"ello\n" and got["output.log"].start == 1
        point = got["metrics.jsonl"].points[0]
        assert point.series == "loss" and point.step == 0 and point.value != point.value
        agent.command("unwatch", run_id=RUN)
        agent.command("watch", run_id="../nope", offsets={})
        _at, error = agent.next(AgentError, timeout=5)
        assert "bad command ignored" in error.message
