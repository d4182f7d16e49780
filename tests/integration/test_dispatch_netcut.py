"""Runs outlive the network and the app: a real network cut (a namespace whose loopback is
taken down, with the host's sshd and ``labdeck serve`` inside it), ``serve`` stopped
meanwhile, the runs ending while nobody watches — and afterwards their real exit codes.
And a fake reboot (new boot id, the run's processes gone) marks a run lost and retries it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.queue.runs import RunState
from ssh_backend.runs import attempt_run_id
from tests.conftest import Lab
from tests.harness.labapp import LabApp, base_run_id, run_dirs
from tests.harness.netfault import NetNamespace, unavailable_reason
from tests.harness.nshost import start_in
from tests.harness.sshd import SshdHost

pytestmark = [pytest.mark.sshd]

# Runs until ~/go exists on its host, then exits with the code given as its argument.
JOB = """\
import os, sys, time
go = os.path.expanduser("~/go")
while not os.path.exists(go):
    time.sleep(0.05)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def namespace() -> Iterator[NetNamespace]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    ns = NetNamespace()
    yield ns
    ns.close()


def folder_of(host: SshdHost, run_id: str, attempt: int = 0) -> Path:
    name = attempt_run_id(run_id, attempt)
    path = run_dirs(host).get(name)
    assert path is not None, (name, sorted(run_dirs(host)))
    return path


def wait_file(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.netns
@pytest.mark.timeout(90)
def test_runs_outlive_a_network_cut_and_a_closed_app(
    tmp_path: Path, lab: Lab, namespace: NetNamespace
) -> None:
    host = lab.sshd.add_host(f"cut-{os.getpid() % 1000}-{tmp_path.name[-12:]}", start=False)
    start_in(namespace, host)
    app = LabApp(tmp_path, [host])
    try:
        script = tmp_path / "wait_go.py"
        script.write_text(JOB)
        (good,) = app.submit(str(script), "--", "0")
        (bad,) = app.submit(str(script), "--", "7")
        serve = app.serve("--poll", "0.5", wrap=namespace.argv)
        app.wait_runs(lambda runs: all(r.state is RunState.RUNNING for r in runs), 40, serve)
        # A launch that the slow start-up cut short is queued again as a new attempt
        # (its own folder); the folders to watch are those of the attempts now running.
        folders = {run_id: folder_of(host, run_id, app.run(run_id).attempt)
                   for run_id in (good, bad)}
        pids = []
        for folder in folders.values():
            wait_file(folder / "state.json")
            pids.append(json.loads((folder / "state.json").read_text())["pid"])

        namespace.link_down()
        time.sleep(2.0)
        assert all(alive(pid) for pid in pids)
        # The app is closed while the network is still down; the runs go on.
        assert app.stop(serve) == 0, app.serve_output()[-2000:]
        assert all(alive(pid) for pid in pids)
        assert {r.state for r in app.runs()} == {RunState.RUNNING}

        (host.home / "go").touch()  # they end while nobody is watching
        for folder in folders.values():
            wait_file(folder / "exit_code")
        namespace.link_up()
        again = app.serve("--once", "--wait", "40", wrap=namespace.argv)
        assert again.wait(60) == 0, app.serve_output()[-2000:]
        assert app.run(good).state is RunState.SUCCEEDED and app.run(good).exit_code == 0
        assert app.run(bad).state is RunState.FAILED and app.run(bad).exit_code == 7
        assert "exited with code 7" in app.run(bad).reason
    finally:
        app.close()
        host.close()


@pytest.mark.timeout(90)
def test_a_reboot_marks_the_run_lost_and_it_is_retried(tmp_path: Path, lab: Lab) -> None:
    host = lab.hosts[2]
    (host.home / "go").unlink(missing_ok=True)
    app = LabApp(tmp_path, [host])
    script = tmp_path / "wait_go.py"
    script.write_text(JOB)
    (run_id,) = app.submit(str(script), "--", "0")
    serve = app.serve("--poll", "0.5")
    try:
        app.wait_runs(lambda runs: runs[0].state is RunState.RUNNING, 40, serve)
        attempt = app.run(run_id).attempt  # a launch cut short by a slow start is retried
        first = folder_of(host, run_id, attempt)
        wait_file(first / "state.json")
        state = json.loads((first / "state.json").read_text())
        wrapper = json.loads((first / "wrapper.json").read_text())
        # A reboot: a new boot id, and every process of the run gone without a trace.
        host.fake_reboot()
        for pid in (wrapper["pid"], state["pid"]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        app.wait_runs(lambda runs: runs[0].attempt == attempt + 1, 40, serve)
        app.wait_runs(lambda runs: runs[0].state is RunState.RUNNING, 40, serve)
        second = folder_of(host, run_id, attempt + 1)
        wait_file(second / "state.json")
        (host.home / "go").touch()
        runs = app.wait_runs(lambda runs: runs[0].state.finished, 40, serve)
        assert runs[0].state is RunState.SUCCEEDED and runs[0].exit_code == 0
        assert not (first / "exit_code").exists()  # the lost attempt never finished
        assert (second / "exit_code").read_text().strip() == "0"
        out = app.serve_output()
        assert f"{run_id} wait_go queued: host rebooted; retrying" in out, out
        assert {base_run_id(name) for name in run_dirs(host)} == {run_id}
    finally:
        assert app.stop(serve) == 0
        app.close()
        (host.home / "go").unlink(missing_ok=True)
