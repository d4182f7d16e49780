"""GPU leases: abstract UNIX sockets that a run's wrapper holds, probed by the agent and
named in its samples. Held leases refuse others whatever the Unix user or umask, die
with their process, and name their holder by the kernel's uid and pid."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssh_backend.protocol import Sample, decode
from tests.harness.agent_process import AgentProcess
from tests.harness.runhost import AGENT_DIR, wait_until

sys.path.insert(0, str(AGENT_DIR))
import gpu_sim
import leases
import wire

# Holds leases and answers probes, as a wrapper does; prints "held" once they are held.
HOLD = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); import leases\n"
    "held = leases.acquire(sys.argv[3:], sys.argv[2], wait_s=0.2)\n"
    "print('held', flush=True)\n"
    "while True: leases.serve_all(held, 0.05)\n"
)
# Binds a lease name and never answers: a squatter, not a wrapper.
SQUAT = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "s.bind('\\0' + sys.argv[1]); s.listen(64)\n"
    "print('held', flush=True); time.sleep(300)\n"
)


# Another Unix user cannot run the venv's interpreter (under root's home): the system one.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"


@pytest.fixture
def ns() -> str:
    """A lease namespace of this test's own (abstract names are machine-wide)."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _start(argv: list[str], ns: str, user: str | None = None,
           umask: int = 0o022) -> subprocess.Popen[bytes]:
    def demote() -> None:
        os.umask(umask)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    python = sys.executable if user is None else SYSTEM_PYTHON
    proc = subprocess.Popen([python, "-c", *argv], stdout=subprocess.PIPE,
                            env={**os.environ, "LABDECK_LEASE_NS": ns}, preexec_fn=demote)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"held\n"
    return proc


def hold_in_process(ns: str, run_id: str, *uuids: str, user: str | None = None,
                    umask: int = 0o022) -> subprocess.Popen[bytes]:
    return _start([HOLD, str(AGENT_DIR), run_id, *uuids], ns, user, umask)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(5)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture
def other_user() -> Iterator[str]:
    """A real second Unix user (the tests run as root)."""
    if os.geteuid() != 0:
        pytest.fail("the lease tests need root to act as a second Unix user")
    yield "nobody"


def test_acquire_names_the_holder_and_is_all_or_nothing(ns: str) -> None:
    other = hold_in_process(ns, "run-other", "GPU-b")
    try:
        info = leases.holder_info("GPU-b", ns)
        assert info is not None
        assert (info["run_id"], info["pid"], info["uid"]) == ("run-other", other.pid, os.getuid())
        assert leases.holder("GPU-b", ns) == "run-other"
        assert leases.holder("GPU-a", ns) is None
        started = time.monotonic()
        with pytest.raises(leases.Held) as caught:
            leases.acquire(["GPU-a", "GPU-b"], "run-mine", wait_s=0.3, root=ns)
        assert time.monotonic() - started >= 0.3
        assert caught.value.uuid == "GPU-b" and caught.value.holder["run_id"] == "run-other"
        assert f"GPU-b is leased by run run-other (user root, pid {other.pid})" in str(caught.value)
        # GPU-a was taken first and given back when GPU-b could not be had.
        assert leases.holder("GPU-a", ns) is None
    finally:
        stop(other)
    # The lease died with its process: now both can be had.
    held = leases.acquire(["GPU-a", "GPU-b"], "run-mine", wait_s=0.3, root=ns)
    try:
        assert len(held) == 2
        assert leases.holder("GPU-b", ns) is not None  # bound, though nobody serves here
    finally:
        for lease in held:
            lease.close()
    assert leases.holder("GPU-b", ns) is None


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_leases_exclude_another_unix_user_under_any_umask(
    ns: str, other_user: str, umask: int
) -> None:
    theirs = hold_in_process(ns, "their-run", "GPU-shared", user=other_user, umask=umask)
    try:
        with pytest.raises(leases.Held) as caught:
            leases.acquire(["GPU-shared"], "my-run", wait_s=0.2, root=ns)
        # Who holds it is the kernel's word: their uid, whatever they wrote.
        holder = caught.value.holder
        assert holder["uid"] == pwd.getpwnam(other_user).pw_uid
        assert holder["user"] == other_user and holder["run_id"] == "their-run"
    finally:
        stop(theirs)
    mine = hold_in_process(ns, "my-run", "GPU-shared", umask=umask)
    try:
        with pytest.raises(leases.Held):
            # ... and the other way round: they cannot take mine.
            subprocess.run(
                [SYSTEM_PYTHON, "-c", HOLD, str(AGENT_DIR), "their-2", "GPU-shared"],
                env={**os.environ, "LABDECK_LEASE_NS": ns}, check=True, capture_output=True,
                preexec_fn=lambda: (os.setgid(pwd.getpwnam(other_user).pw_gid),
                                    os.setuid(pwd.getpwnam(other_user).pw_uid)),
                timeout=20)
    except subprocess.CalledProcessError as exc:
        assert b"GPU GPU-shared is leased by run my-run (user root" in exc.stderr
    else:
        pytest.fail("a second user took a held lease")
    finally:
        stop(mine)


def test_a_squatter_is_named_by_the_kernel_not_by_what_it_says(ns: str) -> None:
    squatter = _start([SQUAT, leases.address("GPU-sq", ns)[1:]], ns)
    try:
        info = leases.holder_info("GPU-sq", ns, timeout=0.2)
        assert info is not None
        assert info["pid"] == squatter.pid and info["uid"] == os.getuid()
        assert info["run_id"] is None  # it said nothing: only kernel facts
        assert leases.holder("GPU-sq", ns) == f"pid {squatter.pid}"
        with pytest.raises(leases.Held, match=f"user root, pid {squatter.pid}"):
            leases.acquire(["GPU-sq"], "run-x", wait_s=0.1, root=ns)
    finally:
        stop(squatter)


def test_a_holder_cannot_pass_for_someone_else(ns: str, other_user: str) -> None:
    # A labmate's process claims, in its answer, to be root's run: the uid stays theirs.
    liar = hold_in_process(ns, "root-run", "GPU-l", user=other_user)
    try:
        info = leases.holder_info("GPU-l", ns)
        assert info is not None and info["user"] == other_user
    finally:
        stop(liar)


def test_lease_names_are_safe_and_distinct(ns: str) -> None:
    mig = "MIG-GPU-1234/1/0"
    assert leases.address(mig, ns) == f"\0labdeck-gpu-{ns}-MIG-GPU-1234/1/0"
    long_a, long_b = "GPU-" + "a" * 200, "GPU-" + "a" * 199 + "b"
    assert leases.address(long_a, ns) != leases.address(long_b, ns)
    assert len(leases.address(long_a, ns).encode()) <= 101
    for bad in ("", " ", "a\0b"):
        with pytest.raises(ValueError):
            leases.address(bad, ns)
    # Nothing on disk: no folder anyone could pre-create, link or fill.
    held = leases.acquire([mig], "run-m", root=ns)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with pytest.raises(OSError):
            probe.bind(leases.address(mig, ns))
        probe.close()
    finally:
        for lease in held:
            lease.close()


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


def test_agent_reports_a_held_lease_per_gpu(ns: str, tmp_path: Path) -> None:
    host_id = f"lease-host-{os.getpid()}"
    uuid1 = gpu_sim.sim_uuid(host_id, 1)
    args = ("--backend", "sim", "--sim-gpus", "4", "--sim-host-id", host_id,
            "--interval", "0.1")
    with AgentProcess(*args, env={"LABDECK_LEASE_NS": ns}) as agent:
        _t, sample = agent.next(Sample)
        assert all(g.leased_by is None for g in sample.gpus)
        holder = hold_in_process(ns, "run-lease-7", uuid1)
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


def test_folders_a_labmate_planted_do_not_matter(ns: str, other_user: str,
                                                 tmp_path: Path) -> None:
    """What broke the folder-based leases — another user's pre-created /tmp/labdeck-leases
    (0755, theirs), or a link from it to a folder they control — touches nothing now."""
    planted = Path("/tmp/labdeck-leases")
    made = not planted.exists() and not planted.is_symlink()
    if made:
        planted.mkdir(mode=0o755)
        os.chown(planted, pwd.getpwnam(other_user).pw_uid, -1)
    before = set(planted.iterdir()) if planted.is_dir() else set()
    try:
        held = leases.acquire(["GPU-p0"], "run-mine", root=ns)
        try:
            assert leases.holder_info("GPU-p0", ns)["uid"] == os.getuid()
            with pytest.raises(leases.Held):
                leases.acquire(["GPU-p0"], "run-theirs", wait_s=0.1, root=ns)
        finally:
            for lease in held:
                lease.close()
        assert (set(planted.iterdir()) if planted.is_dir() else set()) == before
    finally:
        if made:
            planted.rmdir()
