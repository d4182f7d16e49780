"""A host that now offers a key of another type than the one trusted: refused like a
changed key (never asked about, nothing saved), against real sshd.

Labdeck asks the server for the trusted type first, so a host that still has its trusted
key (beside new ones) connects as before; only one that no longer offers it is refused.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import paramiko
import pytest

from ssh_backend.hostkeys import HostKeyQuestion, KnownHosts, fingerprint
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.sshd import SshdHost, SshdLab, generate_key, public_key

pytestmark = [pytest.mark.sshd]


def _connections(host: SshdHost) -> int:
    return host.log_text().count("Connection from")


def _replace_host_key(host: SshdHost, kind: str) -> paramiko.PKey:
    """The host's only key becomes a fresh one of ``kind`` (as after a reinstall that
    made other key types), effective for new connections."""
    generate_key(host.host_key_path, kind=kind)
    host.restart()
    return host.host_key


def _online_once(host: SshdHost, known: KnownHosts, make_session: SessionFactory) -> None:
    rec = Recorder()
    session = make_session(host.spec(), rec, known)
    session.start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=15)
    session.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_key_of_another_type_is_refused_like_a_changed_key(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory, kind: str
) -> None:
    host = sshd_lab.add_host(f"retyped-{kind}")
    known = KnownHosts(tmp_path / "known_hosts", [])
    host.trust(known)  # its ed25519 key, as one hashed [address]:port line
    _online_once(host, known, make_session)
    trusted = known.app_file.read_text()

    new_key = _replace_host_key(host, kind)
    assert new_key.get_name() != "ssh-ed25519"
    asked: list[HostKeyQuestion] = []
    rec = Recorder()
    session = make_session(host.spec(), rec, known, trust=lambda q: asked.append(q) or True)
    session.start()
    event = rec.wait_state(
        host.name, (HostState.HOSTKEY_CHANGED, HostState.ONLINE), timeout=15
    )
    assert event.state is HostState.HOSTKEY_CHANGED, event.detail
    detail = event.detail
    assert f"{new_key.get_name()} {fingerprint(new_key)}" in detail
    assert "ssh-ed25519 was trusted before" in detail
    label = f"[{host.address}]:{host.port}"
    assert f"ssh-keygen -R {shlex.quote(label)} -f {shlex.quote(str(known.app_file))}" in detail
    assert "else do not connect" in detail, detail

    time.sleep(1.0)
    assert asked == [], "a key of another type must never be offered for trust"
    assert rec.sample_count(host.name) == 0 and host.name not in rec.hellos
    assert known.app_file.read_text() == trusted  # nothing added, nothing replaced
    # A deliberate reconnect does not get past it either.
    seen = _connections(host)
    session.reconnect_now()
    rec.wait_for(lambda: session.attempts == 2, timeout=5)
    time.sleep(1.0)
    assert session.state is HostState.HOSTKEY_CHANGED and asked == []
    assert _connections(host) == seen + 1
    assert known.app_file.read_text() == trusted


@pytest.mark.timeout(60)
def test_host_that_still_offers_the_trusted_type_connects(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    """ECDSA trusted, the host offers ed25519 too (which paramiko prefers by default):
    asked for ECDSA first, it answers with the trusted key and connects without a word."""
    host = sshd_lab.add_host("two-keys", start=False)
    ecdsa_path = generate_key(host.root / "ssh_host_ecdsa_key", kind="ecdsa")
    host.extra_config = (f"HostKey {ecdsa_path}",)
    host.start()
    known = KnownHosts(tmp_path / "known_hosts", [])
    known.add(host.address, host.port, public_key(ecdsa_path))
    asked: list[HostKeyQuestion] = []
    rec = Recorder()
    make_session(host.spec(), rec, known, trust=lambda q: asked.append(q) or True).start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=15)
    assert asked == []
    assert len(known.app_file.read_text().splitlines()) == 1
