"""The window over a real ``Lab`` (real SQLite file, local sessions with the real agent and
simulated GPUs): closing it stops the Lab in the documented order, and a host added or
removed with the real ``labdeck hosts`` CLI while it is open shows up (or goes) in the
window and gets runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.lab import Lab
from app.core.queue.runs import RunState
from app.core.store import Store
from app.ui.shell.features import Features
from app.ui.shell.main import open_lab_window
from app.ui.shell.main_window import MainWindow
from ssh_backend.states import HostState
from tests.harness.kill_under import kill_under
from tests.harness.labcli import LabCli

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(120)]



def labdeck(*args: str) -> str:
    """The real CLI in a process of its own, with this test's LABDECK_HOME and HOME."""
    return LabCli.of_this_process().ok(*args)


def record_stops(lab: Lab) -> list[str]:
    """Which of the Lab's parts were stopped, in order (from any thread)."""
    order: list[str] = []
    for name in ("dispatcher", "ingestor", "monitor"):
        part = getattr(lab, name)

        def stop(timeout: float = 5.0, _real=part.stop, _name=name) -> None:
            order.append(_name)
            _real(timeout)

        part.stop = stop
    return order


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[MainWindow, Features, Lab]]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "lab"))
    monkeypatch.setenv("HOME", str(home))
    labdeck("hosts", "add", "sim1", "--local", "--simulate-gpus", "2", "--interval", "0.2")
    lab = Lab.open()
    win, features = open_lab_window(lab)
    qtbot.addWidget(win)
    win.show()
    lab.start()
    try:
        yield win, features, lab
    finally:
        features.close()
        win.bridge.detach()
        win.cluster_view.stop()
        lab.close()
        kill_under(home)


def online(lab: Lab, name: str) -> bool:
    view = lab.monitor.host(name)
    return view is not None and view.state is HostState.ONLINE and view.sample is not None


def test_closing_the_window_stops_dispatcher_then_ingestor_then_monitor(qtbot, window) -> None:
    win, _features, lab = window
    qtbot.waitUntil(lambda: online(lab, "sim1"), timeout=30_000)
    order = record_stops(lab)
    with qtbot.waitSignal(win.closed, timeout=20_000):
        win.close()
    assert order == ["dispatcher", "ingestor", "monitor"]
    assert not win.isVisible()


def test_host_added_with_the_cli_shows_in_the_window_and_gets_runs(
    qtbot, window, tmp_path: Path
) -> None:
    win, _features, lab = window
    qtbot.waitUntil(lambda: "sim1" in win.cluster_view.groups, timeout=10_000)
    labdeck("hosts", "add", "sim2", "--local", "--simulate-gpus", "1", "--interval", "0.2")
    qtbot.waitUntil(lambda: "sim2" in win.cluster_view.groups, timeout=10_000)
    qtbot.waitUntil(lambda: online(lab, "sim2"), timeout=30_000)

    script = tmp_path / "hello.py"
    script.write_text("print('hello from sim2')\n")
    (run_id,) = labdeck("submit", str(script), "--host", "sim2").split()
    qtbot.waitUntil(lambda: _state(lab, run_id) is RunState.SUCCEEDED, timeout=60_000)
    run = lab.runstore.get(run_id)
    assert run is not None and run.host == "sim2"

    labdeck("hosts", "rm", "sim2")
    qtbot.waitUntil(lambda: "sim2" not in win.cluster_view.groups, timeout=10_000)
    assert lab.monitor.names() == ["sim1"]
    with Store.open() as store:  # the CLI's change, not undone by the window
        assert [h.name for h in store.hosts()] == ["sim1"]


def _state(lab: Lab, run_id: str) -> RunState | None:
    run = lab.runstore.get(run_id)
    return run.state if run is not None else None
