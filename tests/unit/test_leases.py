"""GPU leases: flock files that a run's wrapper holds, probed by the agent and named in
its samples; held leases refuse others, die with their process, and never follow links."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ssh_backend.protocol import Sample, decode
from tests.harness.agent_process import AgentProcess
from tests.harness.runhost import AGENT_DIR, wait_until

sys.path.insert(0, str(AGENT_DIR))
import gpu_sim
import leases
import wire

HOLD = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); import leases\n"
    "fds = leases.acquire(sys.argv[3:], sys.argv[2])\n"
    "print('held', flush=True); time.sleep(300)\n"
)


def hold_in_process(root: Path, run_id: str, *uuids: str) -> subprocess.Popen[bytes]:
    """Another process holding leases (as a wrapper would); returns once they are held."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(AGENT_DIR), run_id, *uuids],
        stdout=subprocess.PIPE, env={**os.environ, "LABDECK_LEASE_DIR": str(root)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"held\n"
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(5)
    if proc.stdout:
        proc.stdout.close()


def test_acquire_names_the_holder_and_is_all_or_nothing(tmp_path: Path) -> None:
    root = tmp_path / "leases"
    other = hold_in_process(root, "run-other", "GPU-b")
    try:
        assert leases.holder("GPU-b", str(root)) == "run-other"
        assert leases.holder("GPU-a", str(root)) is None
        started = time.monotonic()
        with pytest.raises(leases.Held) as caught:
            leases.acquire(["GPU-a", "GPU-b"], "run-mine", wait_s=0.3, root=str(root))
        assert time.monotonic() - started >= 0.3
        assert (caught.value.uuid, caught.value.holder) == ("GPU-b", "run-other")
        assert "GPU-b is leased by run run-other" in str(caught.value)
        # GPU-a was taken first and given back when GPU-b could not be had.
        assert leases.holder("GPU-a", str(root)) is None
    finally:
        stop(other)
    # The lease died with its process: now both can be had.
    fds = leases.acquire(["GPU-a", "GPU-b"], "run-mine", wait_s=0.3, root=str(root))
    try:
        assert len(fds) == 2
        assert (root / "GPU-b").read_text() == "run-mine\n"
    finally:
        for fd in fds:
            os.close(fd)
    assert root.stat().st_mode & 0o7777 == 0o1777
    assert (root / "GPU-a").stat().st_mode & 0o777 == 0o644


def test_acquire_waits_out_a_short_probe(tmp_path: Path) -> None:
    """The agent holds LOCK_SH for a moment: a launch must retry, not refuse."""
    root = tmp_path / "leases"
    leases.ensure_dir(str(root))
    path = root / "GPU-p"
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    timer = threading.Timer(0.3, lambda: fcntl.flock(fd, fcntl.LOCK_UN))
    timer.start()
    try:
        fds = leases.acquire(["GPU-p"], "run-patient", root=str(root))
    finally:
        timer.join()
        os.close(fd)
    assert leases.holder("GPU-p", str(root)) == "run-patient"
    for held in fds:
        os.close(held)
    assert leases.holder("GPU-p", str(root)) is None


def test_lease_files_never_follow_links_and_names_are_safe(tmp_path: Path) -> None:
    root = tmp_path / "leases"
    leases.ensure_dir(str(root))
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (root / "GPU-link").symlink_to(victim)
    with pytest.raises(OSError):
        leases.acquire(["GPU-link"], "run-x", wait_s=0.1, root=str(root))
    assert victim.read_text() == "precious"
    assert leases.holder("GPU-link", str(root)) is None
    mig = "MIG-GPU-1234/1/0"
    assert leases.lease_path(mig, str(root)) == str(root / "MIG-GPU-1234_1_0")
    for bad in ("", "..", "."):
        with pytest.raises(ValueError):
            leases.lease_path(bad, str(root))


def test_protocol_reads_leased_by() -> None:
    reading = wire.gpu_reading(0, "GPU-x", leased_by="r123")
    line = wire.encode(wire.sample(1, 1.0, [reading, wire.gpu_reading(1, "GPU-y")]))
    sample = decode(line)
    assert isinstance(sample, Sample)
    assert [g.leased_by for g in sample.gpus] == ["r123", None]
    legacy = line.replace(b',"leased_by":"r123"', b"").replace(b',"leased_by":null', b"")
    assert b"leased_by" not in legacy
    old = decode(legacy)
    assert isinstance(old, Sample) and old.gpus[0].leased_by is None


def test_agent_reports_a_held_lease_per_gpu(tmp_path: Path) -> None:
    root = tmp_path / "leases"
    host_id = f"lease-host-{os.getpid()}"
    uuid1 = gpu_sim.sim_uuid(host_id, 1)
    args = ("--backend", "sim", "--sim-gpus", "4", "--sim-host-id", host_id,
            "--interval", "0.1")
    with AgentProcess(*args, env={"LABDECK_LEASE_DIR": str(root)}) as agent:
        _t, sample = agent.next(Sample)
        assert all(g.leased_by is None for g in sample.gpus)
        holder = hold_in_process(root, "run-lease-7", uuid1)
        try:
            seen: list[Sample] = []

            def leased() -> bool:
                seen.append(agent.next(Sample)[1])
                return seen[-1].gpus[1].leased_by == "run-lease-7"

            wait_until(leased, 5, "the agent to report the lease")
            assert [g.leased_by for g in seen[-1].gpus] == [None, "run-lease-7", None, None]
        finally:
            holder.send_signal(signal.SIGKILL)
            stop(holder)

        def released() -> bool:
            return agent.next(Sample)[1].gpus[1].leased_by is None

        wait_until(released, 5, "the agent to see the lease released")
