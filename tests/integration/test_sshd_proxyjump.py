"""ProxyJump through a second real sshd, with the host key checked on both hops."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from ssh_backend.hostkeys import KnownHosts
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.sshd import SshdHost, SshdLab, socket_owner_pids

pytestmark = [pytest.mark.sshd]


@pytest.fixture(scope="module")
def hops(sshd_lab: SshdLab) -> tuple[SshdHost, SshdHost]:
    return sshd_lab.add_host("jump"), sshd_lab.add_host("behind-jump")


def _config(tmp_path: Path, jump: SshdHost) -> Path:
    """The jump host is known by an alias only, so its settings must come from the config."""
    path = tmp_path / "ssh_config"
    path.write_text(
        f"Host bastion\n  HostName {jump.address}\n  Port {jump.port}\n  User root\n"
        f"  IdentityFile {jump.client_key}\n  IdentitiesOnly yes\n"
    )
    return path


@pytest.mark.timeout(60)
def test_target_is_reached_through_the_jump_sshd(
    hops: tuple[SshdHost, SshdHost], tmp_path: Path, make_session: SessionFactory
) -> None:
    jump, target = hops
    known = KnownHosts(tmp_path / "known_hosts", [])
    jump.trust(known)
    target.trust(known)
    rec = Recorder()
    spec = target.spec(proxy_jump=("bastion",))
    make_session(spec, rec, known, ssh_config=_config(tmp_path, jump)).start()
    rec.wait_state(target.name, HostState.ONLINE, timeout=15)
    rec.wait_samples(target.name, 2, timeout=5)
    assert len(rec.hellos[target.name][0].gpus) == 4

    # The jump sshd opened a direct-tcpip channel to the target for us …
    assert re.search(
        rf"server_request_direct_tcpip: .* target {re.escape(target.address)} port {target.port}",
        jump.log_text(),
    ), jump.log_text()[-2000:]
    # … and the TCP connection the target accepted belongs to a jump sshd process.
    froms = re.findall(
        rf"Connection from (\S+) port (\d+) on {re.escape(target.address)} port {target.port}",
        target.log_text(),
    )
    owners = set()
    for address, port in froms:
        owners |= socket_owner_pids((address, int(port)), (target.address, target.port))
    assert owners, f"no live connection to the target found: {froms}"
    assert owners <= set(jump.tree()), (owners, jump.tree())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("untrusted", ["jump", "target"])
def test_host_key_is_checked_on_every_hop(
    hops: tuple[SshdHost, SshdHost], tmp_path: Path, make_session: SessionFactory,
    untrusted: str,
) -> None:
    jump, target = hops
    known = KnownHosts(tmp_path / "known_hosts", [])
    (target if untrusted == "jump" else jump).trust(known)
    rec = Recorder()
    spec = target.spec(proxy_jump=("bastion",))
    make_session(spec, rec, known, ssh_config=_config(tmp_path, jump)).start()
    event = rec.wait_state(target.name, HostState.HOSTKEY_UNKNOWN, timeout=15)
    bad = jump if untrusted == "jump" else target
    assert f"{bad.address}:{bad.port}" in event.detail
    assert ("jump host" in event.detail) == (untrusted == "jump")
    assert rec.sample_count(target.name) == 0


# A minimal `nc HOST PORT`: what a ProxyCommand does, written down so the test needs no nc.
PROXY = """
import os, selectors, socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
with open(sys.argv[3], "a") as log:
    log.write(f"proxied {sys.argv[1]}:{sys.argv[2]}\\n")
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                sys.exit(0)
            sock.sendall(data)
        else:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
"""


@pytest.mark.timeout(60)
def test_proxycommand_from_the_config_carries_the_connection(
    hops: tuple[SshdHost, SshdHost], tmp_path: Path, make_session: SessionFactory
) -> None:
    _jump, target = hops
    proxy, log = tmp_path / "proxy.py", tmp_path / "proxy.log"
    proxy.write_text(PROXY)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host viaproxy\n  HostName {target.address}\n  Port {target.port}\n  User root\n"
        f"  ProxyCommand {sys.executable} {proxy} %h %p {log}\n"
    )
    known = KnownHosts(tmp_path / "known_hosts", [])
    target.trust(known)
    rec = Recorder()
    spec = target.spec(hostname=None, port=None, user=None, ssh_alias="viaproxy")
    make_session(spec, rec, known, ssh_config=config).start()
    rec.wait_state(target.name, HostState.ONLINE, timeout=15)
    assert log.read_text() == f"proxied {target.address}:{target.port}\n"
