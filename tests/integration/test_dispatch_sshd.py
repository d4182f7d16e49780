"""Queue → dispatch → runs on real sshd hosts (simulated GPUs), through the ``labdeck`` CLI.

Every Labdeck here is a real subprocess (``labdeck submit``, ``labdeck serve``) with its
own LABDECK_HOME; runs really start on the hosts through the wrapper, and the tests look
at what the wrapper and the jobs wrote into the run folders on the hosts' HOMEs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.queue.runs import RunState
from tests.conftest import Lab
from tests.harness.labapp import LabApp, base_run_id, run_dirs
from tests.harness.sshd import SshdHost

pytestmark = [pytest.mark.sshd]

JOB = """\
import os, sys, time
print("CVD=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[1]))
"""
# Starts a grandchild in the job's process group and records both pids, then waits.
TREE_JOB = """\
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
with open(os.path.join(os.environ["LABDECK_RUN_DIR"], "pids"), "w") as fh:
    fh.write("%d %d\\n" % (os.getpid(), child.pid))
time.sleep(300)
"""


@pytest.fixture
def app(tmp_path: Path, lab: Lab) -> Iterator[LabApp]:
    labapp = LabApp(tmp_path, lab.hosts[:2])
    yield labapp
    labapp.close()


def outsider(host: SshdHost, gpu: int) -> subprocess.Popen[bytes]:
    """Someone's own process on ``gpu`` of ``host``, started by hand (not by Labdeck)."""
    env = {**os.environ, "LABDECK_SIM_GPUS": str(gpu), "LABDECK_SIM_HOST": host.name}
    return subprocess.Popen(["sleep", "120"], env=env, stdin=subprocess.DEVNULL)


def folder(host: SshdHost, run_id: str) -> Path:
    matches = [p for name, p in run_dirs(host).items() if base_run_id(name) == run_id]
    assert len(matches) == 1, (run_id, sorted(run_dirs(host)))
    return matches[0]


@pytest.mark.timeout(90)
def test_runs_start_on_free_gpus_with_their_cuda_visible_devices(
    app: LabApp, lab: Lab, tmp_path: Path
) -> None:
    ws1, ws2 = lab.hosts[:2]
    script = tmp_path / "job.py"
    script.write_text(JOB)
    manual = outsider(ws1, 0)
    try:
        reserved = app("reserve", ws1.name, "1", "--note", "my manual work")
        assert reserved.returncode == 0, reserved.stderr
        (one,) = app.submit(str(script), "--host", ws1.name, "--", "1.0")
        (two,) = app.submit(str(script), "--host", ws1.name, "--gpus", "2", "--", "0.3")
        (big,) = app.submit(str(script), "--gpus", "2", "--", "0.3")
        serve = app.serve("--until-done", "--poll", "0.5")
        assert serve.wait(75) == 0, app.serve_output()
    finally:
        manual.kill()
        manual.wait()
    runs = {run.id: run for run in app.runs()}
    assert all(run.state is RunState.SUCCEEDED for run in runs.values()), runs
    assert all(run.exit_code == 0 for run in runs.values())
    # ws1: GPU 0 has someone's process, GPU 1 is reserved: only 2 and 3 are ever used,
    # and the 2-GPU run waited for both rather than starting on one.
    assert runs[one].host == ws1.name and runs[one].gpus in [(2,), (3,)]
    assert runs[two].host == ws1.name and runs[two].gpus == (2, 3)
    assert runs[big].host == ws2.name and len(runs[big].gpus) == 2
    assert runs[one].ended_at is not None and runs[two].started_at is not None
    assert runs[two].started_at >= runs[one].ended_at - 0.5
    for run in runs.values():
        host = ws1 if run.host == ws1.name else ws2
        log = (folder(host, run.id) / "output.log").read_text()
        assert f"CVD={','.join(map(str, run.gpus))}" in log, log
    out = app.serve_output()
    assert f"{one} job succeeded (exit code 0)" in out, out


@pytest.mark.timeout(90)
def test_cancel_kills_the_whole_tree_and_records_the_exit_code(
    app: LabApp, lab: Lab, tmp_path: Path
) -> None:
    ws1 = lab.hosts[0]
    script = tmp_path / "tree.py"
    script.write_text(TREE_JOB)
    (run_id,) = app.submit(str(script), "--host", ws1.name)
    serve = app.serve("--poll", "0.5")
    try:
        app.wait_runs(lambda runs: runs[0].state is RunState.RUNNING, 40, serve)
        pids_file = folder(ws1, run_id) / "pids"
        deadline = time.monotonic() + 20
        while not pids_file.exists():
            assert time.monotonic() < deadline, "the job never wrote its pids"
            time.sleep(0.1)
        job_pid, grandchild = map(int, pids_file.read_text().split())
        assert _alive(job_pid) and _alive(grandchild)
        result = app("cancel", run_id)
        assert result.returncode == 0, result.stderr
        assert "cancel requested" in result.stdout
        runs = app.wait_runs(lambda runs: runs[0].state.finished, 40, serve)
        assert runs[0].state is RunState.CANCELLED, runs[0]
        assert runs[0].exit_code == 128 + signal.SIGTERM
        assert not _alive(job_pid) and not _alive(grandchild)
        shown = app("show", run_id)
        assert "cancelled" in shown.stdout and str(128 + signal.SIGTERM) in shown.stdout
    finally:
        assert app.stop(serve) == 0


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.timeout(90)
def test_bad_submissions_queue_nothing(app: LabApp, lab: Lab, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    (kept,) = app.submit(str(script), "--", "1")
    before = app("ls", "--json").stdout
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\ncommand: [python3, -c, 'pass'\ngpus: 1\n")
    unknown_key = tmp_path / "typo.yaml"
    unknown_key.write_text("name: x\ncommand: [python3, -c, 'pass']\ngpu: 1\n")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('name = "x"\ncommand = [\n')
    sweep_bad_host = tmp_path / "sweep.yaml"
    sweep_bad_host.write_text(
        "name: s\ncommand: [python3, -c, 'pass']\nhosts: [nowhere]\nsweep:\n  lr: [1, 2]\n"
    )
    cases = [
        ([str(bad_yaml)], "bad.yaml"),
        ([str(unknown_key)], "gpu"),
        ([str(bad_toml)], "bad.toml"),
        ([str(sweep_bad_host)], "nowhere"),
        ([str(script), "--host", "nowhere"], "unknown host"),
        ([str(script), "--gpus", "5"], "impossible"),
        ([str(script), "--host", lab.hosts[0].name, "--gpus", "9"], "impossible"),
        ([str(tmp_path / "missing.py")], "no such script"),
        ([str(tmp_path / "missing.yaml")], "cannot read"),
    ]
    for args, needle in cases:
        result = app("submit", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert result.stdout == "", (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert lines[-1] == "labdeck: nothing was queued", (args, result.stderr)
        assert any(needle in line for line in lines), (args, result.stderr)
    assert app("ls", "--json").stdout == before
    assert [run.id for run in app.runs()] == [kept]
