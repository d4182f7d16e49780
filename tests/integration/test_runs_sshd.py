"""Runs over real SSH onto simulated workstations: launch shows on the GPU with its lease,
the run outlives a frozen sshd and a closed app, cancel kills the tree, a snapshot is
uploaded and read, a fake reboot reads as lost."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from ssh_backend.connect import Timeouts
from ssh_backend.events import SessionUnavailable
from ssh_backend.protocol import Hello, Sample
from ssh_backend.runs import LaunchRefused, LaunchRequest, RunStatus, cancel, launch, reconcile
from ssh_backend.session import HostSession
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.runhost import RunHost, pid_gone, process_group, wait_until
from tests.harness.sshd import Lab, SshdHost

pytestmark = [pytest.mark.sshd]
QUICK = Timeouts(channel=2.0, dead_after=4.0, ping_interval=1.0, backoff_initial=0.2,
                 backoff_max=1.0)


@pytest.fixture(autouse=True)
def _kill_leftover_runs(lab: Lab) -> Iterator[None]:
    yield
    for host in lab.hosts:
        RunHost(host.root).cleanup()


def online(lab: Lab, host: SshdHost, make_session: SessionFactory, rec: Recorder) -> HostSession:
    session = make_session(host.spec(), rec, lab.known_hosts, timeouts=QUICK)
    mark = rec.mark()
    session.start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=15, since=mark)
    return session


def gated(host: SshdHost, gate: str, code: int) -> dict[str, object]:
    """A job that runs until the file ``~/<gate>`` exists on the host, then exits ``code``."""
    path = str(host.home / gate)
    script = (f"import os,sys,time\nwhile not os.path.exists({path!r}): time.sleep(0.05)\n"
              f"sys.exit({code})")
    return {"argv": [sys.executable, "-c", script], "sim_host": host.name}


def wait_kind(session: HostSession, run_id: str, kind: str, timeout: float) -> RunStatus:
    found: list[RunStatus] = []

    def reached() -> bool:
        found[:] = [reconcile(session, [run_id])[run_id]]
        return found[0].kind == kind

    wait_until(reached, timeout, f"{run_id} to be {kind} ({found})", every=0.2)
    return found[0]


@pytest.mark.timeout(60)
def test_launch_shows_on_its_gpu_with_the_lease_then_finishes(
    lab: Lab, make_session: SessionFactory
) -> None:
    host = lab.hosts[0]
    rec = Recorder()
    session = online(lab, host, make_session, rec)
    hello: Hello = rec.hellos[host.name][-1]
    uuid2 = hello.gpus[2].uuid
    request = LaunchRequest("ssh-run-1", gated(host, "go-1", 9), (2,), (uuid2,))
    status = launch(session, request)
    assert status.kind == "running" and status.pid is not None
    seen: list[Sample] = []

    def on_gpu() -> bool:
        rec.wait_samples(host.name, 1, timeout=5)
        seen[:] = [rec.samples[host.name][-1][1]]
        gpu = seen[0].gpus[2]
        return gpu.leased_by == "ssh-run-1" and [p.pid for p in gpu.processes] == [status.pid]

    wait_until(on_gpu, 10, "the sim agent to show the run on GPU 2")
    others = [g for g in seen[0].gpus if g.index != 2]
    assert all(g.leased_by is None and not g.processes for g in others)
    with pytest.raises(LaunchRefused, match=f"GPU {uuid2} is leased by run ssh-run-1"):
        launch(session, LaunchRequest("ssh-run-2", {"argv": ["true"]}, (2,), (uuid2,)))
    (host.home / "go-1").touch()
    done = wait_kind(session, "ssh-run-1", "finished", 10)
    assert done.exit_code == 9 and not done.cancelled
    assert reconcile(session, ["ssh-run-2"])["ssh-run-2"].kind == "unknown"


@pytest.mark.timeout(90)
def test_run_outlives_a_frozen_sshd_and_a_closed_app(
    lab: Lab, make_session: SessionFactory
) -> None:
    host = lab.hosts[1]
    rec = Recorder()
    idle = make_session(host.spec(), rec, lab.known_hosts, timeouts=QUICK)
    with pytest.raises(SessionUnavailable, match="not connected"):
        reconcile(idle, ["ssh-run-3"])
    session = online(lab, host, make_session, rec)
    uuid0 = rec.hellos[host.name][-1].gpus[0].uuid
    status = launch(session, LaunchRequest("ssh-run-3", gated(host, "go-3", 7), (0,), (uuid0,)))
    assert status.kind == "running" and status.pid is not None
    host.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(SessionUnavailable):
            session.control({"op": "reconcile", "run_ids": ["ssh-run-3"]}, timeout=3.0)
        assert time.monotonic() - started < 8
        time.sleep(1.0)
        assert not pid_gone(status.pid), "the run died with its frozen sshd"
        session.stop()  # the app closes while the host hangs
    finally:
        host.thaw()
    assert session.state is HostState.STOPPED
    time.sleep(0.5)
    assert not pid_gone(status.pid)
    again = online(lab, host, make_session, Recorder())
    after = reconcile(again, ["ssh-run-3"])["ssh-run-3"]
    assert after.kind == "running" and after.pid == status.pid
    assert after.start_time == status.start_time and after.boot_id == status.boot_id
    again.stop()
    (host.home / "go-3").touch()  # the run ends while no app is connected
    wait_until(lambda: pid_gone(status.pid), 5, "the run to end")
    last = online(lab, host, make_session, Recorder())
    done = reconcile(last, ["ssh-run-3"])["ssh-run-3"]
    assert done.kind == "finished" and done.exit_code == 7


@pytest.mark.timeout(60)
def test_cancel_over_ssh_kills_the_tree(lab: Lab, make_session: SessionFactory) -> None:
    host = lab.hosts[2]
    rec = Recorder()
    session = online(lab, host, make_session, rec)
    uuid1 = rec.hellos[host.name][-1].gpus[1].uuid
    job = {"shell": "sleep 300 & sleep 300 & wait", "sim_host": host.name}
    status = launch(session, LaunchRequest("ssh-run-4", job, (1,), (uuid1,)))
    assert status.pgid is not None
    group: list[int] = []

    def members() -> bool:
        group[:] = [int(p) for p in os.listdir("/proc")
                    if p.isdigit() and process_group(p) == status.pgid]
        return len(group) == 3

    wait_until(members, 5, "bash and two sleeps in the job's group")
    answer = cancel(session, "ssh-run-4", grace_s=5.0)
    assert answer.kind == "running" and answer.detail == "cancel requested"
    done = wait_kind(session, "ssh-run-4", "finished", 10)
    assert done.cancelled and done.exit_code == 143
    wait_until(lambda: all(pid_gone(p) for p in group), 5, "the whole tree to die")


@pytest.mark.timeout(60)
def test_snapshot_upload_and_fake_reboot(lab: Lab, make_session: SessionFactory) -> None:
    host = lab.hosts[0]
    rec = Recorder()
    session = online(lab, host, make_session, rec)
    uuid3 = rec.hellos[host.name][-1].gpus[3].uuid
    files = {
        "train.py": b"print(open('data/params.txt').read().strip(), 'from the snapshot')\n",
        "data/params.txt": b"lr=0.1\n",
    }
    job = {"argv": [sys.executable, "train.py"], "sim_host": host.name}
    launch(session, LaunchRequest("ssh-run-5", job, (3,), (uuid3,), files=files))
    done = wait_kind(session, "ssh-run-5", "finished", 10)
    assert done.exit_code == 0
    folder = host.home / ".labdeck" / "runs" / "ssh-run-5"
    assert (folder / "output.log").read_bytes() == b"lr=0.1 from the snapshot\n"
    assert (folder / "code" / "data" / "params.txt").stat().st_mode & 0o777 == 0o600
    assert (folder / "code" / "data").stat().st_mode & 0o777 == 0o700
    assert folder.stat().st_mode & 0o777 == 0o700
    with pytest.raises(ValueError, match="must be relative"):
        session.upload("ssh-run-6", {"../../.ssh/authorized_keys": b"x"})
    # A fake reboot: the run that was running is lost, the finished one stays finished.
    launch(session, LaunchRequest("ssh-run-7", gated(host, "go-7", 0), (3,), (uuid3,)))
    host.fake_reboot()
    try:
        statuses = reconcile(session, ["ssh-run-5", "ssh-run-7"])
    finally:
        host.boot_id_file.unlink()
        (host.home / "go-7").touch()
    assert statuses["ssh-run-5"].kind == "finished"
    assert statuses["ssh-run-7"].kind == "lost"
