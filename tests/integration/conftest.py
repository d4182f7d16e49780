"""Integration fixtures: sessions that see only the keys a test gives them, this machine
as a runctl host, and the ``labdeck`` CLI over a store the test fills."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ssh_backend.connect import Timeouts
from ssh_backend.hostkeys import KnownHosts
from ssh_backend.hostspec import HostSpec
from ssh_backend.session import HostSession
from tests.harness.labcli import StoreCli
from tests.harness.recorder import Recorder, SessionFactory
from tests.harness.runhost import RunHost
from tests.harness.slurm import SlurmCluster
from tests.harness.slurm import available as slurm_unavailable


@pytest.fixture(autouse=True)
def _isolated_ssh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ssh-agent of the person running the tests may log a session in."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[SessionFactory]:
    """Build HostSessions (default keys looked up in an empty folder); all stopped after."""
    empty_keys = tmp_path / "no-default-keys"
    empty_keys.mkdir()
    made: list[HostSession] = []

    def make(
        spec: HostSpec,
        listener: Recorder,
        known_hosts: KnownHosts,
        timeouts: Timeouts | None = None,
        **kwargs: Any,
    ) -> HostSession:
        session = HostSession(
            spec, listener, known_hosts=known_hosts, timeouts=timeouts,
            key_dir=empty_keys, **kwargs,
        )
        made.append(session)
        return session

    yield make
    for session in made:
        session.stop()


@pytest.fixture
def store_cli(tmp_path: Path) -> Iterator[StoreCli]:
    """``python -m app`` over a store in a private LABDECK_HOME, open here to be filled."""
    made = StoreCli(tmp_path)
    yield made
    made.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[RunHost]:
    """This machine as a host for runctl and the wrapper (tests.harness.runhost.RunHost,
    rooted in tmp_path); every run it started is killed after the test."""
    made = RunHost(tmp_path)
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real one-node Slurm with 4 GPUs (tests.harness.slurm) for a test module; skipped
    where it cannot run (not root, Slurm not installed)."""
    why = slurm_unavailable()
    if why:
        pytest.skip(why)
    with SlurmCluster(gpus=4) as made:
        yield made
