"""Host keys against real sshd: unknown, trusted on first use, refused, changed."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from ssh_backend.hostkeys import HostKeyQuestion, KnownHosts
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.sshd import SshdHost, SshdLab

pytestmark = [pytest.mark.sshd]


def _keygen_fingerprint(host: SshdHost) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{host.host_key_path}.pub"],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.split()[1]


def _connections(host: SshdHost) -> int:
    return host.log_text().count("Connection from")


@pytest.mark.timeout(60)
def test_unknown_key_without_decider_waits_without_retrying(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    host = sshd_lab.add_host("unknown-key")
    known = KnownHosts(tmp_path / "app" / "known_hosts", [])
    rec = Recorder()
    session = make_session(host.spec(), rec, known)
    session.start()
    event = rec.wait_state(host.name, HostState.HOSTKEY_UNKNOWN, timeout=10)
    assert "ssh-ed25519" in event.detail
    assert _keygen_fingerprint(host) in event.detail
    seen = _connections(host)
    time.sleep(2.5)
    assert _connections(host) == seen, "a session in HOSTKEY_UNKNOWN must not retry"
    assert session.attempts == 1
    assert rec.sample_count(host.name) == 0 and host.name not in rec.hellos
    assert not known.app_file.exists()

    # The user trusts the key elsewhere (e.g. the UI wrote it): reconnect_now applies it.
    host.trust(known)
    session.reconnect_now()
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)


@pytest.mark.timeout(60)
def test_trust_on_first_use_appends_one_hashed_line(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    host = sshd_lab.add_host("tofu")
    known = KnownHosts(tmp_path / "app" / "known_hosts", [])
    asked: list[HostKeyQuestion] = []

    def decide(question: HostKeyQuestion) -> bool:
        asked.append(question)
        return True

    rec = Recorder()
    make_session(host.spec(), rec, known, trust=decide).start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)
    assert asked == [
        HostKeyQuestion(host.address, host.port, "ssh-ed25519", _keygen_fingerprint(host))
    ]
    lines = known.app_file.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("|1|")
    assert host.address not in lines[0]
    assert lines[0].split()[1:] == ["ssh-ed25519", host.host_key.get_base64()]
    assert stat.S_IMODE(known.app_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(known.app_file.parent.stat().st_mode) == 0o700
    # A fresh KnownHosts reading that file knows the host now.
    assert KnownHosts(known.app_file, []).check(host.address, host.port, host.host_key) == "known"


@pytest.mark.timeout(60)
def test_declined_key_stays_refused(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    host = sshd_lab.add_host("declined")
    known = KnownHosts(tmp_path / "known_hosts", [])
    asked: list[HostKeyQuestion] = []
    rec = Recorder()
    session = make_session(host.spec(), rec, known, trust=lambda q: asked.append(q) or False)
    session.start()
    event = rec.wait_state(host.name, HostState.HOSTKEY_UNKNOWN, timeout=10)
    assert "not trusted" in event.detail
    time.sleep(1.5)
    assert len(asked) == 1 and session.attempts == 1
    assert session.state is HostState.HOSTKEY_UNKNOWN
    assert rec.sample_count(host.name) == 0
    assert not known.app_file.exists()


@pytest.mark.timeout(60)
def test_changed_key_is_a_hard_stop_that_never_asks(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    host = sshd_lab.add_host("rotated")
    known = KnownHosts(tmp_path / "known_hosts", [])
    host.trust(known)
    rec = Recorder()
    first = make_session(host.spec(), rec, known)
    first.start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)
    first.stop()

    old_key = host.host_key
    host.rotate_host_key()
    assert host.host_key != old_key
    asked: list[HostKeyQuestion] = []
    rec2 = Recorder()
    second = make_session(host.spec(), rec2, known, trust=lambda q: asked.append(q) or True)
    second.start()
    event = rec2.wait_state(host.name, HostState.HOSTKEY_CHANGED, timeout=10)
    assert "CHANGED" in event.detail and _keygen_fingerprint(host) in event.detail
    time.sleep(1.0)
    assert asked == []
    assert rec2.sample_count(host.name) == 0 and host.name not in rec2.hellos
    assert known.check(host.address, host.port, host.host_key) == "changed"
    # The app file still holds only the old key: nothing was silently replaced.
    assert len(known.app_file.read_text().splitlines()) == 1
    # A deliberate reconnect does not get past it either.
    second.reconnect_now()
    rec2.wait_for(lambda: second.attempts == 2, timeout=5)
    time.sleep(1.0)
    assert second.attempts == 2 and asked == []
    assert second.state is HostState.HOSTKEY_CHANGED and rec2.sample_count(host.name) == 0
