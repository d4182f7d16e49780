"""Three real sshd hosts with the real agent: online, samples, a frozen host recovers."""

from __future__ import annotations

import os
import time

import pytest

from ssh_backend.session import HostSession
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.sshd import Lab

pytestmark = [pytest.mark.sshd]


def _start_all(lab: Lab, rec: Recorder, make_session: SessionFactory) -> list[HostSession]:
    sessions = [make_session(h.spec(), rec, lab.known_hosts) for h in lab.hosts]
    for session in sessions:
        session.start()
    return sessions


@pytest.mark.timeout(60)
def test_three_hosts_come_online_with_four_gpus_each(
    lab: Lab, make_session: SessionFactory
) -> None:
    rec = Recorder()
    started = time.monotonic()
    sessions = _start_all(lab, rec, make_session)
    for host in lab.hosts:
        rec.wait_state(host.name, HostState.ONLINE, timeout=10)
        rec.wait_samples(host.name, 3, timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f} s"
    for host, session in zip(lab.hosts, sessions, strict=True):
        hello = rec.hellos[host.name][0]
        assert len(hello.gpus) == 4
        assert hello.simulated and hello.backend == "sim"
        _t, sample = rec.samples[host.name][-1]
        assert len(sample.gpus) == 4
        assert session.state is HostState.ONLINE
        states = [e.state for e in rec.states_of(host.name)]
        assert states[:2] == [HostState.CONNECTING, HostState.ONLINE]
    # Every callback came from a session worker thread, never from the test thread.
    assert all(name.startswith("labdeck-session-") for name in rec.callback_threads)
    for session in sessions:
        session.stop()
        assert session.state is HostState.STOPPED
        session.stop()  # idempotent


@pytest.mark.timeout(90)
def test_frozen_host_goes_stale_then_offline_and_recovers_alone(
    lab: Lab, make_session: SessionFactory
) -> None:
    rec = Recorder()
    _start_all(lab, rec, make_session)
    frozen, *others = lab.hosts
    for host in lab.hosts:
        rec.wait_state(host.name, HostState.ONLINE, timeout=10)
    mark = rec.mark()
    frozen.freeze()
    t0 = time.monotonic()
    try:
        stale = rec.wait_state(frozen.name, (HostState.STALE, HostState.OFFLINE), 15, mark)
        assert stale.time - t0 < 15
        # The other hosts keep streaming while one hangs.
        for host in others:
            rec.wait_samples(host.name, 10, timeout=5)
            assert rec.last_state(host.name).state is HostState.ONLINE
        offline = rec.wait_state(frozen.name, HostState.OFFLINE, 15, mark)
        assert offline.time - t0 < 15, f"offline after {offline.time - t0:.1f} s"
        assert "no answer" in offline.detail
        frozen_count = rec.sample_count(frozen.name)
    finally:
        thaw_mark = rec.mark()
        frozen.thaw()
    thawed = time.monotonic()
    back = rec.wait_state(frozen.name, HostState.ONLINE, 30, thaw_mark)
    assert back.time - thawed < 30
    rec.wait_samples(frozen.name, 3, timeout=5)
    assert rec.sample_count(frozen.name) > frozen_count
    print(f"stale after {stale.time - t0:.1f} s, offline after {offline.time - t0:.1f} s, "
          f"online {back.time - thawed:.1f} s after thaw")


@pytest.mark.timeout(60)
def test_reconnects_leak_no_file_descriptors(lab: Lab, make_session: SessionFactory) -> None:
    host = lab.hosts[1]
    rec = Recorder()
    session = make_session(host.spec(), rec, lab.known_hosts)
    session.start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)
    rounds = 6
    counts = []
    for _ in range(rounds):
        hellos = len(rec.hellos[host.name])
        session.reconnect_now()
        assert rec.wait_for(lambda h=hellos: len(rec.hellos[host.name]) > h, timeout=10)
        rec.wait_samples(host.name, 1, timeout=5)
        counts.append(len(os.listdir("/proc/self/fd")))
    assert session.attempts == rounds + 1
    # Allow noise from other threads of the test process, but no growth per reconnect.
    assert counts[-1] - counts[1] <= 2, counts
