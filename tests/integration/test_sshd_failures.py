"""What goes wrong in real life, against real sshd: each ends in a clear state and detail."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssh_backend.connect import Timeouts
from ssh_backend.hostkeys import KnownHosts, fingerprint
from ssh_backend.hostspec import AgentOptions
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.sshd import SshdHost, SshdLab, generate_key, public_key

pytestmark = [pytest.mark.sshd]

FAST_RETRY = Timeouts(backoff_initial=0.2, backoff_max=1.0)


@pytest.fixture(scope="module")
def host(sshd_lab: SshdLab) -> SshdHost:
    return sshd_lab.add_host("failures")


@pytest.fixture
def known(host: SshdHost, tmp_path: Path) -> KnownHosts:
    known = KnownHosts(tmp_path / "known_hosts", [])
    host.trust(known)
    return known


@pytest.mark.timeout(60)
def test_refused_port_is_offline_retried_and_recovers(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    down = sshd_lab.add_host("down")
    known = KnownHosts(tmp_path / "known_hosts", [])
    down.trust(known)
    down.kill_listener()
    rec = Recorder()
    session = make_session(down.spec(), rec, known, timeouts=FAST_RETRY)
    session.start()
    event = rec.wait_state(down.name, HostState.OFFLINE, timeout=10)
    assert f"cannot reach {down.address}:{down.port}: connection refused" in event.detail
    assert "retrying in" in event.detail
    assert rec.wait_for(lambda: session.attempts >= 3, timeout=10), session.attempts
    assert session.state is HostState.OFFLINE
    down.start()  # the host comes back: the session finds it without being told
    rec.wait_state(down.name, HostState.ONLINE, timeout=10)


@pytest.mark.timeout(60)
def test_wrong_key_is_auth_failed_without_retrying(
    host: SshdHost, known: KnownHosts, tmp_path: Path, make_session: SessionFactory
) -> None:
    stranger = generate_key(tmp_path / "stranger")
    rec = Recorder()
    session = make_session(host.spec(key_filename=str(stranger)), rec, known)
    session.start()
    event = rec.wait_state(host.name, HostState.AUTH_FAILED, timeout=10)
    assert f"root@{host.address}:{host.port} refused every key" in event.detail
    assert str(stranger) in event.detail
    time.sleep(1.5)
    assert session.attempts == 1 and session.state is HostState.AUTH_FAILED


@pytest.mark.timeout(60)
def test_encrypted_key_without_passphrase_says_use_ssh_agent(
    host: SshdHost, known: KnownHosts, tmp_path: Path, make_session: SessionFactory
) -> None:
    locked = generate_key(tmp_path / "locked", passphrase="correct horse")
    # Authorized on the host: the key is right, it just cannot be used without its passphrase.
    with (host.root / "authorized_keys").open("a") as keys:
        keys.write(locked.with_name("locked.pub").read_text())
    rec = Recorder()
    make_session(host.spec(key_filename=str(locked)), rec, known).start()
    event = rec.wait_state(host.name, HostState.AUTH_FAILED, timeout=10)
    assert f"the key {locked} is encrypted" in event.detail
    assert "ssh-agent" in event.detail and "ssh-add" in event.detail
    assert "correct horse" not in event.detail


@pytest.mark.timeout(60)
def test_host_without_python3_is_agent_failed(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory
) -> None:
    bare = sshd_lab.add_host("no-python", env={"PATH": "/nonexistent"})
    known = KnownHosts(tmp_path / "known_hosts", [])
    bare.trust(known)
    rec = Recorder()
    make_session(bare.spec(), rec, known).start()
    event = rec.wait_state(bare.name, HostState.AGENT_FAILED, timeout=10)
    assert f"python3 not found on {bare.name}; install python3 (3.8+)" in event.detail
    assert rec.sample_count(bare.name) == 0


@pytest.mark.timeout(60)
def test_garbage_from_nvidia_smi_keeps_the_host_up(
    sshd_lab: SshdLab, tmp_path: Path, make_session: SessionFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"FAKE_SMI_MODE": "garbage", "FAKE_SMI_GPUS": "2"}
    smi = sshd_lab.add_host("garbage-smi", env=env, fake_smi=True)
    known = KnownHosts(tmp_path / "known_hosts", [])
    smi.trust(known)
    rec = Recorder()
    spec = smi.spec(agent=AgentOptions(interval_s=0.2, backend="smi"))
    caplog.set_level(logging.WARNING, logger="ssh_backend")
    make_session(spec, rec, known).start()
    rec.wait_state(smi.name, HostState.ONLINE, timeout=15)
    hello = rec.hellos[smi.name][0]
    assert hello.backend == "smi" and len(hello.gpus) == 2
    rec.wait_samples(smi.name, 8, timeout=10)
    states = {e.state for e in rec.states_of(smi.name)}
    assert states <= {HostState.CONNECTING, HostState.ONLINE}, states
    _t, last = rec.samples[smi.name][-1]
    assert len(last.gpus) == 2
    # The junk really went through: the agent skipped it and said so, as a non-fatal error.
    reports = [r.getMessage() for r in caplog.records if "agent reports" in r.getMessage()]
    assert any("nvidia-smi" in m for m in reports), reports


@pytest.mark.timeout(60)
def test_malformed_ssh_config_names_file_and_line(
    host: SshdHost, known: KnownHosts, tmp_path: Path, make_session: SessionFactory
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host ws\n  HostName {host.address}\n  Port twenty-two\n")
    rec = Recorder()
    spec = host.spec(hostname=None, port=None, ssh_alias="ws")
    make_session(spec, rec, known, ssh_config=config, timeouts=FAST_RETRY).start()
    event = rec.wait_state(host.name, HostState.OFFLINE, timeout=10)
    # ssh -G's wording ("Bad port"), or the paramiko fallback's ("Port must be 1-65535").
    assert re.search(f"{re.escape(str(config))}:3: (Bad port|Port must be)", event.detail)
    # Fixing the file is picked up by the next retry, no restart needed.
    config.write_text(f"Host ws\n  HostName {host.address}\n  Port {host.port}\n")
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)


@pytest.mark.timeout(60)
def test_stop_is_prompt_while_a_frozen_host_holds_the_handshake(
    host: SshdHost, known: KnownHosts, make_session: SessionFactory
) -> None:
    rec = Recorder()
    session = make_session(host.spec(), rec, known)
    host.freeze()
    try:
        session.start()
        rec.wait_state(host.name, HostState.CONNECTING, timeout=5)
        time.sleep(1.0)  # TCP is accepted by the kernel; the SSH banner never comes
        assert session.state is HostState.CONNECTING
        started = time.monotonic()
        session.stop(timeout=5)
        assert time.monotonic() - started < 2.0
        assert session.state is HostState.STOPPED
    finally:
        host.thaw()


@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent of this test only; SSH_AUTH_SOCK points at it."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.kill()
        agent.wait()


@pytest.mark.timeout(60)
def test_encrypted_key_loaded_into_ssh_agent_logs_in(
    host: SshdHost, known: KnownHosts, tmp_path: Path, make_session: SessionFactory,
    ssh_agent: Path,
) -> None:
    locked = generate_key(tmp_path / "agent_locked", passphrase="pw for the agent")
    decoy = generate_key(tmp_path / "decoy")
    with (host.root / "authorized_keys").open("a") as keys:
        keys.write(locked.with_name("agent_locked.pub").read_text())
        keys.write(decoy.with_name("decoy.pub").read_text())
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho 'pw for the agent'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
           "DISPLAY": ":0"}
    for key in (decoy, locked):  # the decoy first: the agent would offer it first
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host agentbox\n  HostName {host.address}\n  Port {host.port}\n"
                      f"  User root\n  IdentityFile {locked}\n  IdentitiesOnly yes\n")
    rec = Recorder()
    spec = host.spec(hostname=None, port=None, key_filename=None, ssh_alias="agentbox")
    make_session(spec, rec, known, ssh_config=config).start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)
    # IdentitiesOnly: the login used the configured key (through the agent), not the decoy.
    accepted = re.findall(r"Accepted publickey for root .* (SHA256:\S+)", host.log_text())
    assert accepted[-1] == fingerprint(public_key(locked))
