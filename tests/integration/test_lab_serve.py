"""``labdeck serve`` runs one ``Lab`` (local sessions with the real agent and simulated
GPUs, a real SQLite file): it stops dispatcher, ingestor and monitor in that order, and a
host added with ``labdeck hosts add`` while it serves gets runs without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli.main import main
from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.ingest import Ingestor
from app.core.queue.dispatcher import Dispatcher
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.harness.labcli import REPO, LabCli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    user = tmp_path / "home"
    user.mkdir()
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "lab"))
    monkeypatch.setenv("HOME", str(user))
    return tmp_path


def labdeck(*args: str) -> str:
    return LabCli.of_this_process().ok(*args)


def add_sim_host(name: str) -> None:
    labdeck("hosts", "add", name, "--local", "--simulate-gpus", "1", "--interval", "0.2")


def test_serve_stops_dispatcher_then_ingestor_then_monitor(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_sim_host("sim1")
    order: list[str] = []
    for cls, name in ((Dispatcher, "dispatcher"), (Ingestor, "ingestor"),
                      (ClusterMonitor, "monitor")):
        def stop(self: object, timeout: float = 5.0, _real: Callable[..., None] = cls.stop,
                 _name: str = name) -> None:
            order.append(_name)
            _real(self, timeout)

        monkeypatch.setattr(cls, "stop", stop)
    assert main(["serve", "--once", "--wait", "30"]) == 0
    assert order == ["dispatcher", "ingestor", "monitor"]


def test_serve_gives_runs_to_a_host_added_while_it_serves(home: Path) -> None:
    add_sim_host("sim1")
    serve = subprocess.Popen(LabCli.of_this_process().command("serve", "--poll", "0.5"),
                             cwd=REPO, env=os.environ, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert serve.stdout is not None
        first = serve.stdout.readline()  # serving already: sim2 comes later
        assert first == "dispatching to 1 host: sim1\n", first + serve.communicate()[0]
        add_sim_host("sim2")
        script = home / "hello.py"
        script.write_text("print('hello from sim2')\n")
        (run_id,) = labdeck("submit", str(script), "--host", "sim2").split()
        with Store.open() as store:
            runs = RunStore(store)
            deadline = time.monotonic() + 60
            while (run := runs.get(run_id)) is None or run.state is not RunState.SUCCEEDED:
                assert time.monotonic() < deadline, f"run {run_id} is {run and run.state}"
                assert serve.poll() is None, serve.communicate()[0]
                time.sleep(0.2)
            assert run.host == "sim2"
    finally:
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=30)[0]
    assert serve.returncode == 0, output
    assert f"{run_id} hello succeeded" in output
