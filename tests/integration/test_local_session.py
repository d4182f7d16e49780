"""LocalSession: the real agent as a child process of this machine, sim backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssh_backend.connect import Timeouts
from ssh_backend.factory import open_session
from ssh_backend.hostkeys import KnownHosts
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.local import LocalSession
from ssh_backend.states import HostState
from tests.harness.recorder import Recorder


def _children() -> set[int]:
    me = str(__import__("os").getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.rfind(")") + 2 :].split()[1] == me:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.timeout(60)
def test_local_session_runs_the_agent_without_ssh(tmp_path: Path) -> None:
    spec = HostSpec(name="this-pc", local=True,
                    agent=AgentOptions(interval_s=0.2, backend="sim", sim_gpus=4))
    rec = Recorder()
    session = open_session(spec, rec, known_hosts=KnownHosts(tmp_path / "kh", []))
    assert isinstance(session, LocalSession)
    before = _children()
    session.start()
    try:
        rec.wait_state("this-pc", HostState.ONLINE, timeout=10)
        rec.wait_samples("this-pc", 3, timeout=5)
        hello = rec.hellos["this-pc"][0]
        assert len(hello.gpus) == 4 and hello.simulated
        assert all(len(s.gpus) == 4 for _t, s in rec.samples["this-pc"])
        assert len(_children() - before) == 1  # exactly one agent process
    finally:
        session.stop()
    assert session.state is HostState.STOPPED
    assert _children() - before == set(), "the agent process outlived the session"


@pytest.mark.timeout(60)
def test_local_agent_that_dies_is_agent_failed_with_its_error(tmp_path: Path) -> None:
    broken = tmp_path / "agent.py"
    broken.write_text("import sys\nsys.stderr.write('boom: cannot start\\n')\nsys.exit(3)\n")
    spec = HostSpec(name="broken", local=True, agent=AgentOptions(backend="sim", sim_gpus=1))
    rec = Recorder()
    session = LocalSession(spec, rec, agent_script=broken,
                           timeouts=Timeouts(backoff_initial=0.2, backoff_max=0.5))
    session.start()
    try:
        event = rec.wait_state("broken", HostState.AGENT_FAILED, timeout=10)
        assert "exited (code 3): boom: cannot start" in event.detail
        assert rec.wait_for(lambda: session.attempts >= 2, timeout=10)  # retried
    finally:
        session.stop()
