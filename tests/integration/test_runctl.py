"""runctl.py (launch, cancel, reconcile on a host) and the app-side functions of
ssh_backend.runs over a LocalSession: idempotent launch, refusals, every reconcile
outcome, malformed requests, and snapshot uploads."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ssh_backend.agent_bundle import build_bundle, bundle_version
from ssh_backend.hostspec import HostSpec
from ssh_backend.local import LocalSession
from ssh_backend.runs import (
    LaunchRefused,
    LaunchRequest,
    RunControlError,
    attempt_run_id,
    cancel,
    launch,
    reconcile,
)
from tests.harness.recorder import Recorder
from tests.harness.runhost import (
    AGENT_DIR,
    RUNCTL,
    RunHost,
    gated_job,
    pid_gone,
    python_job,
    wait_until,
)


def test_reconcile_outcomes(host: RunHost) -> None:
    assert host.status("never-here")["kind"] == "unknown"
    host.run_dir("only-upload").mkdir(parents=True)
    upload_only = host.status("only-upload")
    assert upload_only["kind"] == "unknown"
    assert upload_only["detail"] == "the run was never launched on this host"
    assert host.launch("runs-on", gated_job(host, "go-1", 5))["status"]["kind"] == "running"
    running = host.status("runs-on")
    assert running["kind"] == "running" and running["pid"] == host.state("runs-on")["pid"]
    (host.root / "go-1").touch()
    done = host.wait_kind("runs-on", "finished")
    assert done["exit_code"] == 5 and not done["cancelled"] and not done["timed_out"]
    # A fake reboot: a run without an exit code is lost; a finished one stays finished.
    host.launch("rebooted", gated_job(host, "go-2"))
    host.boot_id_file.write_text(str(uuid.uuid4()))
    lost = host.status("rebooted")
    assert lost["kind"] == "lost" and "rebooted" in lost["detail"]
    assert host.status("runs-on")["kind"] == "finished"
    host.boot_id_file.unlink()
    assert host.status("rebooted")["kind"] == "running"
    # A pid reused by another process is not the run: the start time must match too.
    state_file = host.run_dir("rebooted") / "state.json"
    wrapper_file = host.run_dir("rebooted") / "wrapper.json"
    state, wrapper = json.loads(state_file.read_text()), json.loads(wrapper_file.read_text())
    state_file.write_text(json.dumps({**state, "start_ticks": state["start_ticks"] - 1}))
    wrapper_file.write_text(json.dumps({**wrapper, "start_ticks": wrapper["start_ticks"] - 1}))
    # The wrapper's life lock is the kernel's word that it lives: while held, the run
    # runs whatever the files say. A dead wrapper's lock is free; without the file here
    # the check cannot find it held, as after that death.
    assert host.status("rebooted")["kind"] == "running"
    (host.run_dir("rebooted") / ".wrapper.lock").unlink()
    failed = host.status("rebooted")
    assert failed["kind"] == "failed" and "without writing an exit code" in failed["detail"]
    state_file.write_text(json.dumps(state))
    wrapper_file.write_text(json.dumps(wrapper))
    (host.root / "go-2").touch()
    assert host.wait_kind("rebooted", "finished")["exit_code"] == 0
    many = host.ctl({"op": "reconcile", "run_ids": ["runs-on", "never-here"]})
    assert {k: v["kind"] for k, v in many["statuses"].items()} == {
        "runs-on": "finished", "never-here": "unknown"}


def test_launch_is_idempotent(host: RunHost) -> None:
    counter = host.root / "counter"
    code = (
        f"import os,time\nopen({str(counter)!r},'a').write('x\\n')\n"
        f"while not os.path.exists({str(host.root / 'go')!r}): time.sleep(0.02)"
    )
    first = host.launch("once-only", python_job(code))
    pid = host.state("once-only")["pid"]
    second = host.launch("once-only", python_job(code))
    assert first["status"]["pid"] == second["status"]["pid"] == pid
    # Two launches at the same moment: still one process.
    request = json.dumps({
        "op": "launch", "run_id": "racing-run", "job": {"argv": python_job(code)},
        "gpu_indices": [1], "gpu_uuids": ["GPU-race"],
    }).encode()
    racers = [subprocess.Popen([sys.executable, "-B", str(RUNCTL)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=host.env()) for _ in range(3)]
    replies = [json.loads(p.communicate(request, timeout=20)[0]) for p in racers]
    assert all(r["ok"] for r in replies), replies
    assert len({r["status"]["pid"] for r in replies}) == 1
    wait_until(lambda: counter.exists() and counter.read_text().count("x") == 2, 5, "jobs")
    (host.root / "go").touch()
    host.wait_kind("once-only", "finished")
    host.wait_kind("racing-run", "finished")
    # Relaunching a finished run reports it and starts nothing.
    again = host.launch("once-only", python_job(code))
    assert again["status"]["kind"] == "finished" and again["status"]["exit_code"] == 0
    time.sleep(0.2)
    assert counter.read_text() == "x\nx\n"


def test_held_lease_refuses_and_a_retry_launches_later(host: RunHost) -> None:
    gpu = ((2, "GPU-shared"),)
    assert host.launch("holder-run", gated_job(host, "go-h"), gpus=gpu)["ok"]
    started = time.monotonic()
    refused = host.launch("second-run", ["true"], gpus=gpu)
    assert time.monotonic() - started >= 2.0  # the wrapper retried before refusing
    assert refused["ok"] is False
    # The holder named by its run id, and by the kernel's word for its user and pid.
    assert refused["refused"].startswith("GPU GPU-shared is leased by run holder-run (user ")
    # A refused attempt leaves nothing behind on the host.
    assert not host.run_dir("second-run").exists()
    assert host.status("second-run")["kind"] == "unknown"
    (host.root / "go-h").touch()
    host.wait_kind("holder-run", "finished")
    retry = host.launch("second-run", ["true"], gpus=gpu)
    assert retry["ok"], retry
    assert host.wait_kind("second-run", "finished")["exit_code"] == 0


def test_unwritable_run_folder_is_refused_with_the_reason(host: RunHost) -> None:
    (host.home / ".labdeck").mkdir()
    (host.home / ".labdeck" / "runs").write_text("not a folder")
    reply = host.launch("no-room", ["true"])
    assert reply == {"ok": False,
                     "refused": "cannot write ~/.labdeck/runs/no-room: Not a directory"}


@pytest.mark.parametrize(("request_", "error"), [
    ({"op": "launch", "run_id": "../etc", "job": {"argv": ["x"]}}, "not a valid run id"),
    ({"op": "launch", "run_id": "abcd", "job": {"argv": ["x"], "shell": "y"},
      "gpu_indices": [], "gpu_uuids": []}, "either argv or shell"),
    ({"op": "launch", "run_id": "abcd", "job": {"argv": ["x\0"]},
      "gpu_indices": [], "gpu_uuids": []}, "without NUL"),
    ({"op": "launch", "run_id": "abcd", "job": {"argv": ["x"], "env": {"A=B": "1"}},
      "gpu_indices": [], "gpu_uuids": []}, "not a variable name"),
    ({"op": "launch", "run_id": "abcd", "job": {"argv": ["x"]},
      "gpu_indices": [0, 1], "gpu_uuids": ["GPU-1"]}, "one uuid per GPU index"),
    ({"op": "cancel", "run_id": "abcd", "grace_s": -1}, "grace_s"),
    ({"op": "reconcile", "run_ids": ["ok-id", "Bad Id"]}, "not a valid run id"),
    ({"op": "explode"}, "unknown op"),
])
def test_malformed_requests_get_an_error_and_touch_nothing(
    host: RunHost, request_: dict[str, object], error: str
) -> None:
    reply = host.ctl(request_)
    assert reply["ok"] is False and error in reply["error"], reply
    assert not (host.home / ".labdeck" / "runs" / "abcd" / "job.json").exists()
    assert not (host.root / "etc").exists()


def test_not_json_is_an_error(host: RunHost) -> None:
    done = host.ctl_raw(b"{nope")
    assert done.returncode == 0 and json.loads(done.stdout)["error"].startswith("request is")


# -- the app-side API over LocalSession -------------------------------------------------

@pytest.fixture
def session(host: RunHost, monkeypatch: pytest.MonkeyPatch) -> LocalSession:
    monkeypatch.setenv("LABDECK_LEASE_NS", host.lease_ns)
    monkeypatch.setenv("LABDECK_BOOT_ID_FILE", str(host.boot_id_file))
    return LocalSession(HostSpec(name="here", local=True), Recorder(), home=host.home)


def test_launch_cancel_reconcile_through_a_session(host: RunHost, session: LocalSession) -> None:
    job = {"argv": ["bash", "-c", "cat data/input.txt; sleep 300 & sleep 300"]}
    request = LaunchRequest(run_id="app-run-1", job=job, gpu_indices=(0,),
                            gpu_uuids=("GPU-app",), files={"data/input.txt": b"snapshot\n"})
    status = launch(session, request)
    assert status.kind == "running" and status.pid and status.pid == status.pgid
    assert status.boot_id and status.start_time and abs(status.start_time - time.time()) < 60
    code = host.run_dir("app-run-1") / "code"
    assert (code / "data" / "input.txt").stat().st_mode & 0o777 == 0o600
    assert (code / "data").stat().st_mode & 0o777 == 0o700
    assert launch(session, request).pid == status.pid  # idempotent
    wait_until(lambda: host.output("app-run-1") == b"snapshot\n", 5, "the job to read code/")
    with pytest.raises(LaunchRefused, match="here: GPU GPU-app is leased by run app-run-1"):
        launch(session, LaunchRequest("app-run-2", {"argv": ["true"]}, (0,), ("GPU-app",)))
    after = cancel(session, "app-run-1", grace_s=2.0)
    assert after.kind == "running" and after.detail == "cancel requested"
    wait_until(lambda: reconcile(session, ["app-run-1"])["app-run-1"].kind == "finished",
               10, "cancel to finish the run", every=0.1)
    final = reconcile(session, ["app-run-1", "app-run-2"])
    assert final["app-run-1"].cancelled and final["app-run-1"].exit_code == 128 + signal.SIGTERM
    assert final["app-run-2"].kind == "unknown"
    assert pid_gone(status.pid)
    assert reconcile(session, []) == {}


def test_upload_rules(host: RunHost, session: LocalSession) -> None:
    for bad in ("/etc/passwd", "../escape", "a/../../b", "a//b", "", "./x"):
        with pytest.raises(ValueError, match="must be relative"):
            session.upload("upload-run", {bad: b"x"})
    assert not (host.home / "escape").exists()
    with pytest.raises(ValueError, match="not a valid run id"):
        session.upload("../../x", {"a": b"x"})
    session.upload("upload-run", {"a.py": b"one", "pkg/b.py": b"two"})
    code = host.run_dir("upload-run") / "code"
    assert (code / "a.py").read_bytes() == b"one" and (code / "pkg" / "b.py").read_bytes() == b"two"
    assert host.run_dir("upload-run").stat().st_mode & 0o777 == 0o700
    host.launch("upload-run", ["true"])
    host.wait_kind("upload-run", "finished")
    session.upload("upload-run", {"a.py": b"changed"})  # a launched run's code never changes
    assert (code / "a.py").read_bytes() == b"one"


def test_runctl_failure_is_a_clear_error(session: LocalSession, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "runctl.py"
    broken.write_text("import sys\nsys.stderr.write('boom: disk on fire\\n')\nsys.exit(2)\n")
    monkeypatch.setattr("ssh_backend.local.RUNCTL_SCRIPT", broken)
    with pytest.raises(RunControlError, match="here failed \\(exit code 2\\): boom: disk on fire"):
        reconcile(session, ["some-run"])
    assert attempt_run_id("r1234", 0) == "r1234" and attempt_run_id("r1234", 2) == "r1234-a2"
    assert os.environ["LABDECK_LEASE_NS"].startswith("runhost-")


def test_run_files_ship_in_the_agent_bundle() -> None:
    bundle = build_bundle()
    for name in ("runctl.py", "wrapper.py", "leases.py", "hostinfo.py", "rundir.py"):
        assert bundle.files[name] == (AGENT_DIR / name).read_bytes(), name
        ast.parse(bundle.files[name], feature_version=(3, 8))
    without = {k: v for k, v in bundle.files.items() if k != "wrapper.py"}
    assert bundle_version(without) != bundle.version
