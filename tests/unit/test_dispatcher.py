"""The dispatcher against a real store and monitor, with scripted sessions and hosts.

The fakes are in dispatch_fakes.py; the real-host versions of these scenarios are the
tests/integration/test_dispatch_*.py tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dispatch_fakes import FAST, Rig, wait_for

from app.core.queue.dispatcher import Dispatcher
from app.core.queue.runs import RunState
from app.core.store import Store
from ssh_backend.states import HostState


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, ["ws1", "ws2"])
    yield rig
    rig.close()


def test_runs_start_on_free_gpus_only(rig: Rig) -> None:
    ws1 = rig.sessions["ws1"]
    ws1.busy = {0}  # someone's manual process
    rig.runs.reserve("ws1", 1, "mine")
    one = rig.submit("one", hosts=("ws1",))
    two = rig.submit("two", gpus=2, hosts=("ws1",))
    rig.dispatcher.start()
    ws1.online()
    rig.wait_state(one, RunState.RUNNING)
    run = rig.runs.get(one)
    assert run is not None and run.host == "ws1" and run.gpus == (2,) and run.pid is not None
    (_, request), = rig.hosts.launches
    assert request.job["gpu_indices"] == [2] and request.job["sim_host"] == "ws1"
    assert request.job["argv"] == ["python3", "-c", "pass"]
    # Only GPU 3 is left on ws1: the 2-GPU run waits (never a partial placement).
    time.sleep(0.3)
    assert rig.state(two) is RunState.QUEUED
    rig.hosts.finish(one, 0)
    rig.wait_state(one, RunState.SUCCEEDED)
    rig.wait_state(two, RunState.RUNNING)
    run = rig.runs.get(two)
    assert run is not None and run.gpus == (2, 3)
    assert one in rig.changed and two in rig.changed


def test_exit_codes_are_recorded(rig: Rig) -> None:
    good, bad = rig.submit("good"), rig.submit("bad")
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.wait_state(good, RunState.RUNNING)
    rig.wait_state(bad, RunState.RUNNING)
    rig.hosts.finish(good, 0)
    rig.hosts.finish(bad, 137)
    rig.wait_state(good, RunState.SUCCEEDED)
    rig.wait_state(bad, RunState.FAILED)
    run = rig.runs.get(bad)
    assert run is not None and run.exit_code == 137 and "SIGKILL" in run.reason


def test_refused_launch_goes_back_to_the_queue_and_starts_elsewhere(rig: Rig) -> None:
    rig.hosts.refuse = {("ws1", g) for g in range(4)}
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    wait_for(lambda: rig.hosts.launched(run_id) >= 1)
    rig.sessions["ws2"].online()
    rig.wait_state(run_id, RunState.RUNNING)
    run = rig.runs.get(run_id)
    # A refused attempt left nothing on its host: the same attempt id started on ws2.
    assert run is not None and run.host == "ws2" and run.attempt == 0
    assert rig.hosts.started(run_id) == 1


def test_a_launch_that_reaches_its_host_late_never_runs_twice(rig: Rig) -> None:
    """A loaded host: the launch call times out at the app, the host carries it out
    later. The retry must not run beside it (the fence refuses the late request)."""
    rig.hosts.cut = "late"
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    wait_for(lambda: rig.hosts.launched(run_id) >= 1)
    rig.hosts.cut = None
    # Reconcile fences the unanswered attempt, then a new attempt starts.
    wait_for(lambda: rig.hosts.started(run_id) == 1, why=lambda: str(rig.hosts.launches))
    rig.wait_state(run_id, RunState.RUNNING)
    # Now the slow host gets to the first request: it must be refused.
    assert rig.hosts.deliver_late() == []
    time.sleep(0.3)
    assert rig.hosts.started(run_id) == 1
    run = rig.runs.get(run_id)
    assert run is not None and run.attempt == 1


def test_lasting_refusals_back_off_and_wait_with_the_reason(tmp_path: Path) -> None:
    options = replace(FAST, refused_cooldown_s=0.02, refused_cooldown_max_s=1.0,
                      max_refusals=6)
    rig = Rig(tmp_path, ["ws1"])
    rig.dispatcher = rig.new_dispatcher(options)
    try:
        rig.hosts.refuse = {("ws1", g) for g in range(4)}
        run_id = rig.submit()
        rig.dispatcher.start()
        rig.sessions["ws1"].online()
        wait_for(lambda: rig.hosts.launched(run_id) >= 6)
        # From the sixth refusal on, one try per refused_cooldown_max_s, no more.
        time.sleep(0.5)
        tries = rig.hosts.launched(run_id)
        assert tries <= 7, tries
        run = rig.runs.get(run_id)
        assert run is not None and run.state is RunState.QUEUED
        assert "refused 6 times in a row, trying again every 1 s" in run.reason
        assert "leased by another run" in run.reason
        assert run.attempt == 0  # never a new attempt (host folder) per refusal
        rig.hosts.refuse = set()
        rig.wait_state(run_id, RunState.RUNNING, timeout=5)
        assert rig.hosts.started(run_id) == 1
    finally:
        rig.close()


@pytest.mark.parametrize("cut", ["before", "after"])
def test_a_launch_cut_off_midway_is_settled_by_reconcile(rig: Rig, cut: str) -> None:
    rig.hosts.cut = cut
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    wait_for(lambda: rig.hosts.launched(run_id) >= 1)
    rig.hosts.cut = None
    rig.wait_state(run_id, RunState.RUNNING)
    assert rig.hosts.started(run_id) == 1  # started on a host exactly once
    if cut == "after":
        # The host had it: reconcile found it running, no second launch was needed.
        assert rig.hosts.launched(run_id) == 1


def test_restart_reconciles_what_happened_meanwhile(rig: Rig) -> None:
    ids = [rig.submit(f"r{i}", max_retries=2) for i in range(5)]
    no_retry = rig.submit("no-retry", retry_on_lost=False)
    where = {}
    for i, run_id in enumerate([*ids, no_retry]):
        host = "ws1" if i < 4 else "ws2"
        where[run_id] = (host, (i % 4,))
        assert rig.runs.claim(run_id, host, (i % 4,), (f"GPU-{host}-{i % 4}",))
    done, failed, lost, never, running = ids
    for run_id in (done, failed, lost, running, no_retry):
        assert rig.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING, pid=7)
    rig.hosts.set(done, "finished", *where[done], exit_code=0)
    rig.hosts.set(failed, "failed", *where[failed],
                  detail="the run's process is gone without an exit code")
    rig.hosts.set(lost, "lost", *where[lost])
    rig.hosts.set(no_retry, "lost", *where[no_retry])
    rig.hosts.set(running, "running", *where[running], pid=8, boot_id="boot-1")
    # ``never`` stays LAUNCHING with no run dir on the host: the crash came before launch.
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.sessions["ws2"].online()
    rig.wait_state(done, RunState.SUCCEEDED)
    rig.wait_state(failed, RunState.FAILED)
    rig.wait_state(no_retry, RunState.LOST)
    # Lost with retries left, and never launched: queued again, then started again.
    for run_id in (lost, never):
        wait_for(lambda run_id=run_id: (r := rig.runs.get(run_id)) is not None and r.attempt == 1)
        rig.wait_state(run_id, RunState.RUNNING)
    assert rig.state(running) is RunState.RUNNING
    lost_run = rig.runs.get(no_retry)
    assert lost_run is not None and "rebooted" in lost_run.reason
    assert rig.hosts.launched(done) == 0 and rig.hosts.launched(running) == 0


def test_cancel_ends_a_running_run_with_its_exit_code(rig: Rig) -> None:
    run_id = rig.submit()
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.wait_state(run_id, RunState.RUNNING)
    rig.runs.request_cancel(run_id)
    rig.dispatcher.wake()
    rig.wait_state(run_id, RunState.CANCELLED)
    run = rig.runs.get(run_id)
    assert run is not None and run.exit_code == 143 and rig.hosts.cancels == [run_id]


def test_a_reconnect_asks_the_host_again(rig: Rig) -> None:
    run_id = rig.submit()
    rig.dispatcher = rig.new_dispatcher(replace(FAST, poll_s=60.0))
    rig.dispatcher.start()
    ws1 = rig.sessions["ws1"]
    ws1.online()
    rig.wait_state(run_id, RunState.RUNNING)
    ws1.set_state(HostState.OFFLINE)
    rig.hosts.finish(run_id, 0)  # it ended while the network was down
    time.sleep(0.3)
    assert rig.state(run_id) is RunState.RUNNING  # nobody could have told us yet
    ws1.online()
    rig.wait_state(run_id, RunState.SUCCEEDED)


def test_an_offline_host_gets_nothing(rig: Rig) -> None:
    run_id = rig.submit(hosts=("ws2",))
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.sessions["ws2"].set_state(HostState.OFFLINE)
    rig.sessions["ws2"].sample()  # a late sample of a host that is offline now
    assert rig.dispatcher.wait_idle(5)
    assert rig.state(run_id) is RunState.QUEUED and rig.hosts.launches == []


def test_a_second_dispatcher_on_one_store_waits_then_takes_over(rig: Rig, tmp_path: Path) -> None:
    ids = [rig.submit(f"r{i}", user=f"u{i % 3}") for i in range(40)]
    other_store = Store.open(tmp_path / "labdeck.sqlite3")
    other = Dispatcher(other_store, rig.monitor, FAST, control=rig.hosts)
    try:
        rig.dispatcher.start()
        wait_for(lambda: rig.dispatcher.dispatching)
        other.start()
        for session in rig.sessions.values():
            session.online()
        finished: set[str] = set()
        deadline = time.monotonic() + 30
        while len(finished) < len(ids):
            assert time.monotonic() < deadline, f"{len(finished)} of {len(ids)} finished"
            if len(finished) >= 10 and rig.dispatcher.dispatching:
                assert not other.dispatching and "dispatches this queue" in other.passive_reason()
                rig.dispatcher.stop()  # mid-queue: runs launching and running
            for run in rig.runs.list_runs([RunState.RUNNING]):
                if run.id not in finished:
                    finished.add(run.id)
                    # FakeHosts asserts that no GPU is ever booked twice.
                    rig.hosts.finish(run.host_run_id, 0)
            time.sleep(0.01)
        wait_for(lambda: rig.runs.count([RunState.SUCCEEDED]) == len(ids), 10)
        assert other.dispatching
        assert all(rig.hosts.started(run_id) == 1 for run_id in ids)
    finally:
        other.stop()
        other_store.close()


def test_a_lease_that_disappears_from_the_samples_asks_the_host_at_once(rig: Rig) -> None:
    rig.dispatcher = rig.new_dispatcher(replace(FAST, poll_s=60.0))
    run_id = rig.submit()
    rig.dispatcher.start()
    ws1 = rig.sessions["ws1"]
    ws1.online()
    rig.wait_state(run_id, RunState.RUNNING)
    run = rig.runs.get(run_id)
    assert run is not None
    ws1.sample(leases={run.gpus[0]: run.host_run_id})
    rig.hosts.finish(run_id, 0)
    time.sleep(0.3)
    assert rig.state(run_id) is RunState.RUNNING  # polls are a minute apart
    ws1.sample()  # the lease is gone: the run ended
    rig.wait_state(run_id, RunState.SUCCEEDED, timeout=2.0)


def test_a_timed_out_or_foreign_cancelled_run_says_so(rig: Rig) -> None:
    slow, stopped = rig.submit("slow"), rig.submit("stopped")
    rig.dispatcher.start()
    rig.sessions["ws1"].online()
    rig.wait_state(slow, RunState.RUNNING)
    rig.wait_state(stopped, RunState.RUNNING)
    with rig.hosts.lock:
        rig.hosts.runs[slow] = replace(rig.hosts.runs[slow], kind="finished", exit_code=143,
                                       timed_out=True)
        rig.hosts.runs[stopped] = replace(rig.hosts.runs[stopped], kind="finished",
                                          exit_code=143, cancelled=True)
    rig.wait_state(slow, RunState.FAILED)
    rig.wait_state(stopped, RunState.CANCELLED)
    run = rig.runs.get(slow)
    assert run is not None and "time limit" in run.reason and run.exit_code == 143


def test_lab_reservations_and_fair_share_from_the_hosts_boards(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ["ws1"])
    rig.dispatcher = rig.new_dispatcher(replace(FAST, workers=2))
    rig.dispatcher.lab.every_s = 0.05
    try:
        ws1 = rig.sessions["ws1"]
        until = time.time() + 3600
        ws1.board = {
            "me": "alice",
            "reservations": [{"gpu_uuid": "GPU-ws1-0", "user": "bob", "until": until,
                              "note": "debugging"}],
            "demand": [{"user": "carol", "gpus": 1, "runs": 5, "since": time.time() - 600}],
            # alice (this Labdeck) already holds 2 GPUs; carol holds none and waits.
            "leases": [{"gpu_uuid": "GPU-ws1-1", "user": "alice"},
                       {"gpu_uuid": "GPU-ws1-2", "user": "alice"}],
        }
        ws1.busy = {1, 2}  # what the samples show of alice's two runs
        first = rig.submit("first")
        rig.dispatcher.start()
        ws1.online()
        # 4 GPUs: bob reserved one; alice's share of 3 with carol waiting is 1.5: she holds
        # 2, so the free GPU 3 is left to carol, and the run says why.
        wait_for(lambda: any(ws1.published))
        wait_for(lambda: "over your fair share: carol has waited 10 min"
                 in (rig.runs.get(first).reason or ""), timeout=5,
                 why=lambda: rig.runs.get(first).reason)
        assert rig.state(first) is RunState.QUEUED
        assert rig.hosts.launched(first) == 0
        assert ws1.published[-1] == [{"gpus": 1, "runs": 1, "since": pytest.approx(
            rig.runs.get(first).queued_at), "priority": 0}]
        # carol's demand fades (her laptop closed): alice may take GPU 3, never GPU 0.
        ws1.board = {**ws1.board, "demand": []}
        rig.wait_state(first, RunState.RUNNING)
        run = rig.runs.get(first)
        assert run is not None and run.gpus == (3,)
    finally:
        rig.close()


def test_the_lab_quota_plans_runs_says_why_and_is_kept_for_submit_checks(
    tmp_path: Path
) -> None:
    rig = Rig(tmp_path, ["ws1"])
    rig.dispatcher = rig.new_dispatcher(replace(FAST, workers=2))
    rig.dispatcher.lab.every_s = 0.05
    try:
        ws1 = rig.sessions["ws1"]
        # The host's policy lets alice hold 2 GPUs; she holds one by an earlier run.
        ws1.board = {"me": "alice", "leases": [{"gpu_uuid": "GPU-ws1-3", "user": "alice"}]}
        ws1.policy = {"max_gpus_per_user": 2}
        ws1.busy = {3}
        big, two, one = (rig.submit("big", gpus=3), rig.submit("two", gpus=2),
                         rig.submit("one", gpus=1))
        rig.dispatcher.start()
        ws1.online()
        rig.wait_state(one, RunState.RUNNING)

        def reason(run_id: str) -> str:
            run = rig.runs.get(run_id)
            return run.reason or "" if run is not None else ""
        wait_for(lambda: reason(two).startswith("quota: ") and reason(big), timeout=5,
                 why=lambda: (reason(two), reason(big)))
        assert reason(two) == "quota: 1 GPU in use on ws1 (lab policy allows 2 per user)"
        assert reason(big) == (
            "cannot start as the lab stands: it needs 3 GPUs on one host; the lab policy "
            "allows at most 2 per user on ws1, the roomiest host")
        assert rig.hosts.launched(two) == 0 and rig.hosts.launched(big) == 0
        # What the host said is kept: a later submit is checked against it offline.
        assert rig.store.hosts_said()["ws1"][:2] == (4, 2)
    finally:
        rig.close()
