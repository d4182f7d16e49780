"""A full disk at the first agent upload, for real: the host's ``~/.labdeck`` is a small
tmpfs filled to the last byte before Labdeck ever connects.

SFTP reports a full disk only as a generic "Failure", and paramiko drops the status of
pipelined writes, so without a check the upload "succeeds" with cut files. The host must
say "no space left on HOST (~/.labdeck)" with the room left, leave no partial file
behind, and come online by itself once space is freed. Also when a little room is left,
less than the agent needs: what fitted may stay (whole and right), nothing cut does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ssh_backend.agent_bundle import agent_bundle, remote_dir
from ssh_backend.connect import Timeouts
from ssh_backend.session import HostSession
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder
from tests.harness.sshd import Lab, SshdHost
from tests.harness.tmpfs import FILLER, Tmpfs, tmpfs

pytestmark = [pytest.mark.reliability, pytest.mark.sshd]

FAST_RETRY = Timeouts(backoff_initial=0.2, backoff_max=1.0)
# KiB left free on the host's ~/.labdeck: none, or some but far less than the agent needs.
ROOMS = (0, 128)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("room_kib", ROOMS)
def test_full_disk_at_first_agent_upload_says_no_space(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room_kib: int
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the test's client key
    (tmp_path / "no-default-keys").mkdir()
    host = lab.hosts[ROOMS.index(room_kib)]  # one that never had the agent
    labdeck = host.home / ".labdeck"
    assert not labdeck.exists(), "the host must never have had the agent"
    folder = host.home / remote_dir(agent_bundle().version)
    assert sum(map(len, agent_bundle().files.values())) > 2 * room_kib * 1024
    with tmpfs(labdeck, size_mib=1) as disk:
        os.truncate(disk.filler, disk.fill() - room_kib * 1024)
        assert disk.free_bytes() >= room_kib * 1024
        rec = Recorder()
        session = HostSession(host.spec(), rec, known_hosts=lab.known_hosts,
                              timeouts=FAST_RETRY, key_dir=tmp_path / "no-default-keys")
        session.start()
        try:
            _full_then_freed(host, rec, disk, labdeck, folder, full=room_kib == 0)
        finally:
            session.stop()


def _full_then_freed(
    host: SshdHost, rec: Recorder, disk: Tmpfs, labdeck: Path, folder: Path, full: bool
) -> None:
    event = rec.wait_state(host.name, (HostState.AGENT_FAILED, HostState.ONLINE), 20)
    assert event.state is HostState.AGENT_FAILED, event.detail
    assert event.detail.startswith(f"no space left on {host.name} (~/.labdeck): ")
    assert " MiB free; free some space there;" in event.detail
    if full:
        assert "(~/.labdeck): 0.0 MiB free;" in event.detail
    # Nothing half-written stays behind: no temporary file, no cut agent file.
    left = {p.name: p.read_bytes() for p in labdeck.rglob("*")
            if p.is_file() and p.name != FILLER}
    assert not [name for name in left if ".tmp-" in name]
    assert all(agent_bundle().files[name] == content for name, content in left.items())
    assert bool(left) != full  # what fitted stays: it is right and not sent again

    # A host state, not a stop: the session keeps retrying, so freeing space is enough.
    mark = rec.mark()
    disk.free()
    rec.wait_state(host.name, HostState.ONLINE, timeout=20, since=mark)
    rec.wait_samples(host.name, 2, timeout=10)
    assert sorted(p.name for p in folder.iterdir()) == sorted(agent_bundle().files)
