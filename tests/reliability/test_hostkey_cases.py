"""Host key cases against real sshd that tests/integration/test_sshd_hostkeys.py leaves out:
hashed system entries, ``[host]:port`` entries, ``@cert-authority`` and ``@revoked`` lines.

What paramiko does with host certificates, checked here: it negotiates a plain host key
unless told to prefer a ``*-cert-v01`` type, and when told, it accepts the certificate
without checking its CA signature, validity or principals. So Labdeck never asks for a
certificate: a host with one is judged by its plain key, and a CA line trusts nothing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from ssh_backend.hostkeys import HostKeyQuestion, KnownHosts
from ssh_backend.hostspec import HostSpec
from ssh_backend.session import HostSession
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder
from tests.harness.sshd import SshdHost, SshdLab, generate_key, public_key

pytestmark = [pytest.mark.reliability, pytest.mark.sshd]


class Asked:
    """A trust decider that records each question and answers ``answer``."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.questions: list[HostKeyQuestion] = []

    def __call__(self, question: HostKeyQuestion) -> bool:
        self.questions.append(question)
        return self.answer


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[list[HostSession]]:
    made: list[HostSession] = []
    yield made
    for session in made:
        session.stop()


def _start(sessions: list[HostSession], spec: HostSpec, known: KnownHosts,
           trust: Asked, tmp_path: Path) -> Recorder:
    keys = tmp_path / "no-default-keys"
    keys.mkdir(exist_ok=True)
    rec = Recorder()
    session = HostSession(spec, rec, known_hosts=known, trust=trust, key_dir=keys)
    sessions.append(session)
    session.start()
    return rec


def _line(names: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker}{' ' if marker else ''}{names} {key.get_name()} {key.get_base64()}\n"


def _system(tmp_path: Path, text: str) -> KnownHosts:
    system = tmp_path / "ssh_known_hosts"
    system.write_text(text)
    return KnownHosts(tmp_path / "app" / "known_hosts", [system])


@pytest.mark.timeout(60)
def test_hashed_port_entry_in_a_system_file_is_trusted_without_asking(
    sshd_lab: SshdLab, tmp_path: Path, sessions: list[HostSession]
) -> None:
    host = sshd_lab.add_host("hashed")
    hashed = paramiko.HostKeys.hash_host(f"[{host.address}]:{host.port}")
    known = _system(tmp_path, _line(hashed, host.host_key))
    asked = Asked(True)
    rec = _start(sessions, host.spec(), known, asked, tmp_path)
    rec.wait_state(host.name, HostState.ONLINE, timeout=15)
    assert asked.questions == [] and not known.app_file.exists()


@pytest.mark.timeout(60)
def test_port_is_part_of_the_name(
    sshd_lab: SshdLab, tmp_path: Path, sessions: list[HostSession]
) -> None:
    """The key listed for the bare address (port 22) does not vouch for another port."""
    host = sshd_lab.add_host("portname")
    known = _system(tmp_path, _line(host.address, host.host_key)
                    + _line(f"[{host.address}]:{host.port + 1}", host.host_key))
    asked = Asked(False)
    rec = _start(sessions, host.spec(), known, asked, tmp_path)
    event = rec.wait_state(host.name, HostState.HOSTKEY_UNKNOWN, timeout=15)
    assert "not trusted" in event.detail
    assert [(q.host, q.port) for q in asked.questions] == [(host.address, host.port)]
    time.sleep(1.0)
    assert rec.sample_count(host.name) == 0 and host.name not in rec.hellos

    exact = _system(tmp_path, _line(f"[{host.address}]:{host.port}", host.host_key))
    rec2 = _start(sessions, host.spec(name="portname-2"), exact, Asked(False), tmp_path)
    rec2.wait_state("portname-2", HostState.ONLINE, timeout=15)


@pytest.fixture(scope="module")
def cert_host(sshd_lab: SshdLab) -> tuple[SshdHost, paramiko.PKey]:
    """A host whose sshd also offers a host certificate signed by its own CA."""
    host = sshd_lab.add_host("certified", start=False)
    generate_key(host.host_key_path)
    ca = generate_key(host.root / "host_ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "certified", "-h",
                    "-n", host.address, f"{host.host_key_path}.pub"], check=True)
    host.extra_config = (f"HostCertificate {host.host_key_path}-cert.pub",)
    host.start()
    return host, public_key(ca)


@pytest.mark.timeout(60)
def test_cert_authority_line_trusts_no_plain_key_and_no_certificate(
    cert_host: tuple[SshdHost, paramiko.PKey], tmp_path: Path, sessions: list[HostSession]
) -> None:
    host, ca = cert_host
    # A CA line for the host, and a CA line that carries the host's own plain key.
    known = _system(tmp_path, _line(f"[{host.address}]:{host.port}", ca, "@cert-authority")
                    + _line("*", host.host_key, "@cert-authority"))
    asked = Asked(False)
    rec = _start(sessions, host.spec(), known, asked, tmp_path)
    rec.wait_state(host.name, HostState.HOSTKEY_UNKNOWN, timeout=15)
    [question] = asked.questions
    assert question.key_type == "ssh-ed25519"  # the plain key, not the certificate
    assert len(known.skipped) == 2 and all("@cert-authority" in s for s in known.skipped)
    time.sleep(1.0)
    assert rec.sample_count(host.name) == 0 and host.name not in rec.hellos
    assert "kex: host key algorithm: ssh-ed25519 " in host.log_text() + " "
    assert "host key algorithm: ssh-ed25519-cert" not in host.log_text()


def test_paramiko_accepts_a_host_certificate_unchecked_so_labdeck_never_asks_for_one(
    cert_host: tuple[SshdHost, paramiko.PKey],
) -> None:
    """Why the above matters: asked for a certificate, paramiko takes it without checking
    the CA signature — a CA line could never be honoured safely through it."""
    host, _ca = cert_host
    transport = paramiko.Transport((host.address, host.port))
    try:
        transport.get_security_options().key_types = ("ssh-ed25519-cert-v01@openssh.com",)
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
        assert key.public_blob is not None  # the certificate came through, unverified
        assert key.public_blob.key_type == "ssh-ed25519-cert-v01@openssh.com"
        assert key == host.host_key
    finally:
        transport.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("also_trusted", [True, False])
def test_revoked_key_is_refused_and_never_asked_about(
    sshd_lab: SshdLab, tmp_path: Path, sessions: list[HostSession], also_trusted: bool
) -> None:
    host = sshd_lab.add_host(f"revoked-{also_trusted}")
    text = _line("*", host.host_key, "@revoked")
    if also_trusted:
        text += _line(f"[{host.address}]:{host.port}", host.host_key)
    known = _system(tmp_path, text)
    asked = Asked(True)
    rec = _start(sessions, host.spec(), known, asked, tmp_path)
    event = rec.wait_state(host.name, HostState.HOSTKEY_CHANGED, timeout=15)
    assert "REVOKED" in event.detail
    time.sleep(1.0)
    assert asked.questions == [] and rec.sample_count(host.name) == 0
    assert not known.app_file.exists()
    assert known.check(host.address, host.port, host.host_key) == "revoked"
