"""Exactly once across attempts, on the host: fences for launches that went unanswered,
no second live attempt of a run, nothing left behind by a refused or discarded attempt."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness.runhost import AGENT_DIR, RunHost, gated_job, python_job, wait_until


def fence(host: RunHost, *run_ids: str) -> dict[str, dict]:
    reply = host.ctl({"op": "reconcile", "run_ids": list(run_ids), "fence": list(run_ids)})
    assert reply["ok"], reply
    return reply["statuses"]


def test_a_launch_that_arrives_after_its_fence_never_starts(host: RunHost) -> None:
    marker = host.root / "ran"
    # The app gave up on rlate0001-a1 (its launch went unanswered): it fences it first.
    settled = fence(host, "rlate0001-a1")["rlate0001-a1"]
    assert settled["kind"] == "unknown" and settled["fenced"] is True
    # The request it had sent arrives now (a runctl started late on a loaded host).
    late = host.launch("rlate0001-a1", python_job(f"open({str(marker)!r}, 'w')"))
    assert late["ok"] is False and "given up" in late["refused"]
    assert not host.run_dir("rlate0001-a1").exists()
    assert not marker.exists()
    # The attempt that replaces it starts normally.
    assert host.launch("rlate0001-a2", ["true"])["ok"]
    assert host.wait_kind("rlate0001-a2", "finished")["exit_code"] == 0


def test_fencing_an_attempt_that_did_launch_reports_it(host: RunHost) -> None:
    assert host.launch("rlaun0001", gated_job(host, "go-l"))["status"]["kind"] == "running"
    settled = fence(host, "rlaun0001")["rlaun0001"]
    assert settled["kind"] == "running" and "fenced" not in settled
    (host.root / "go-l").touch()
    assert host.wait_kind("rlaun0001", "finished")["exit_code"] == 0


def test_a_second_live_attempt_of_a_run_is_refused(host: RunHost) -> None:
    first = host.launch("rtwin0001", gated_job(host, "go-t"), gpus=((0, "GPU-a"),))
    assert first["status"]["kind"] == "running"
    # Another attempt of the same run, even on another GPU, must not start beside it.
    second = host.launch("rtwin0001-a1", ["true"], gpus=((1, "GPU-b"),))
    assert second == {"ok": False, "refused": "attempt rtwin0001 of this run is still live "
                                              "on this host"}
    assert not host.run_dir("rtwin0001-a1").exists()
    # A fence of that attempt names the live one, so the app can follow it.
    settled = fence(host, "rtwin0001-a1")["rtwin0001-a1"]
    assert settled["kind"] == "unknown" and settled["live_attempt"] == "rtwin0001"
    assert settled["live_status"]["kind"] == "running"
    (host.root / "go-t").touch()
    assert host.wait_kind("rtwin0001", "finished")["exit_code"] == 0
    # Once it ended, a new attempt (not the fenced one) may run.
    assert host.launch("rtwin0001-a2", ["true"], gpus=((1, "GPU-b"),))["ok"]


def test_discard_removes_a_never_launched_attempt_only(host: RunHost) -> None:
    upload = host.run_dir("rdisc0001") / "code"
    upload.mkdir(parents=True)
    (upload / "train.py").write_text("print(1)\n")
    reply = host.ctl({"op": "discard", "run_id": "rdisc0001"})
    assert reply["ok"] and reply["status"]["kind"] == "unknown"
    assert not host.run_dir("rdisc0001").exists()
    assert host.launch("rdisc0002", gated_job(host, "go-d"))["ok"]
    host.ctl({"op": "discard", "run_id": "rdisc0002"})
    assert host.status("rdisc0002")["kind"] == "running"  # launched: never discarded
    (host.root / "go-d").touch()
    host.wait_kind("rdisc0002", "finished")


def test_other_runs_are_not_siblings(host: RunHost) -> None:
    assert host.launch("rsame0001", gated_job(host, "go-s"), gpus=((0, "GPU-a"),))["ok"]
    # A run whose id merely starts with the same letters is another run.
    assert host.launch("rsame00012", ["true"], gpus=((1, "GPU-b"),))["ok"]
    (host.root / "go-s").touch()
    host.wait_kind("rsame0001", "finished")
    host.wait_kind("rsame00012", "finished")


def test_a_wrapper_whose_launcher_died_before_recording_it_counts_as_live(
    host: RunHost,
) -> None:
    """runctl killed right after spawning the wrapper, before wrapper.json: the run must
    not look 'interrupted' (and be launched again) while its wrapper goes on."""
    folder = host.run_dir("rorph0001")
    folder.mkdir(parents=True)
    gate = host.root / "go-o"
    job = {"argv": python_job(f"import os,time\nwhile not os.path.exists({str(gate)!r}): "
                              "time.sleep(0.02)"),
           "shell": None, "env": {}, "setup": [], "workdir": None, "time_limit_s": None,
           "sim_host": None, "run_id": "rorph0001", "gpu_indices": [0],
           "gpu_uuids": ["GPU-orphan"]}
    (folder / "job.json").write_text(json.dumps(job))
    wrapper = subprocess.Popen(
        [sys.executable, "-B", str(AGENT_DIR / "wrapper.py"), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=host.env(), start_new_session=True)
    assert wrapper.stdin is not None
    wrapper.stdin.write(b"{}")
    wrapper.stdin.close()
    wait_until((folder / "state.json").exists, 10, "the orphaned wrapper to start its job")
    assert not (folder / "wrapper.json").exists()
    assert host.status("rorph0001")["kind"] == "running"
    # Another attempt of the run is refused while it lives.
    assert host.launch("rorph0001-a1", ["true"], gpus=((1, "GPU-other"),))["ok"] is False
    gate.touch()
    assert wrapper.wait(10) == 0
    assert host.status("rorph0001")["kind"] == "finished"
