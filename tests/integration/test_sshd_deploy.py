"""The agent upload: where it lands, its modes, and a tampered copy being replaced."""

from __future__ import annotations

import stat

import pytest

from ssh_backend.agent_bundle import agent_bundle, remote_dir
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.sshd import Lab

pytestmark = [pytest.mark.sshd]


@pytest.mark.timeout(60)
def test_agent_lands_in_the_hosts_home_and_a_tampered_copy_is_replaced(
    lab: Lab, make_session: SessionFactory
) -> None:
    host = lab.hosts[0]
    bundle = agent_bundle()
    folder = host.home / remote_dir(bundle.version)
    rec = Recorder()
    session = make_session(host.spec(), rec, lab.known_hosts)
    session.start()
    rec.wait_state(host.name, HostState.ONLINE, timeout=10)

    # Uploaded under the HOME sshd gives the session (not the SFTP server's start folder).
    assert sorted(p.name for p in folder.iterdir()) == sorted(bundle.files)
    for name, content in bundle.files.items():
        assert (folder / name).read_bytes() == content
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    for part in (host.home / ".labdeck", host.home / ".labdeck/agent", folder):
        assert stat.S_IMODE(part.stat().st_mode) == 0o700

    agent = folder / "agent.py"
    agent.write_bytes(bundle.files["agent.py"] + b"\nraise SystemExit('tampered')\n")
    (folder / "wire.py").unlink()
    hellos = len(rec.hellos[host.name])
    session.reconnect_now()
    rec.wait_for(lambda: len(rec.hellos[host.name]) > hellos, timeout=15)
    rec.wait_samples(host.name, 3, timeout=5)
    assert session.state is HostState.ONLINE
    assert agent.read_bytes() == bundle.files["agent.py"]
    assert (folder / "wire.py").read_bytes() == bundle.files["wire.py"]
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
