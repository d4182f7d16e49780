"""The login-node side of a Slurm pool against a real Slurm (tests/harness/slurm.py):
a run's batch job gets its GPUs from Slurm, and squeue / scontrol read back as the kinds
a run can be in — waiting with Slurm's reason, finished with its exit code, cancelled —
while what Slurm refuses comes back in Slurm's own words."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.runhost import AGENT_DIR
from tests.harness.slurm import GPU_TYPE, SlurmCluster

sys.path.insert(0, str(AGENT_DIR))
import slurm

pytestmark = [pytest.mark.slow]

# Stands in for the wrapper: writes what Slurm gave it, sleeps, exits with a code.
FAKE_WRAPPER = """
import os, sys, time
folder = sys.argv[1]
with open(os.path.join(folder, "cvd"), "w") as fh:
    fh.write(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
time.sleep(float(open(os.path.join(folder, "sleep")).read()))
sys.exit(int(open(os.path.join(folder, "code")).read()))
"""


@pytest.fixture(scope="module")
def cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    return slurm_cluster


def submit(cluster: SlurmCluster, tmp: Path, name: str, gpus: int, sleep: float,
           code: int = 0, **options: Any) -> tuple[str, Path]:
    folder = tmp / name
    folder.mkdir()
    (folder / "sleep").write_text(str(sleep))
    (folder / "code").write_text(str(code))
    wrapper = tmp / "wrapper.py"
    wrapper.write_text(FAKE_WRAPPER)
    argv = slurm.sbatch_argv(name, str(folder), gpus, **options)
    job_id = slurm.submit(argv, slurm.batch_script(sys.executable, str(wrapper), str(folder)),
                          env=cluster.env())
    return job_id, folder


def wait_kind(cluster: SlurmCluster, job_id: str, kinds: set[str],
              timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = slurm.query([job_id], env=cluster.env()).get(job_id, {})
        if found.get("kind") in kinds:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.3)


@pytest.mark.timeout(150)
def test_runs_as_batch_jobs_wait_run_and_end_as_slurm_says(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    first, f1 = submit(cluster, tmp_path, "rslurm01", 2, 6, code=3, gpu_type=GPU_TYPE)
    second, f2 = submit(cluster, tmp_path, "rslurm02", 2, 6)
    third, _f3 = submit(cluster, tmp_path, "rslurm03", 2, 1, time_limit_s=30)
    wait_kind(cluster, first, {"running"})
    wait_kind(cluster, second, {"running"})
    waiting = slurm.query([third], env=cluster.env())[third]
    assert waiting["kind"] == "pending" and waiting["reason"] in ("Resources", "Priority")
    assert {(f1 / "cvd").read_text(), (f2 / "cvd").read_text()} == {"0,1", "2,3"}
    ended = wait_kind(cluster, first, {"finished"})
    assert (ended["state"], ended["exit_code"]) == ("FAILED", 3)
    assert wait_kind(cluster, third, {"finished"})["exit_code"] == 0
    assert (_f3 / "cvd").read_text() in ("0,1", "2,3")


@pytest.mark.timeout(120)
def test_cancel_and_refusals(cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id, _folder = submit(cluster, tmp_path, "rslurm04", 1, 60)
    wait_kind(cluster, job_id, {"running"})
    slurm.cancel(job_id, env=cluster.env())
    assert wait_kind(cluster, job_id, {"cancelled", "finished"})["kind"] in (
        "cancelled", "finished")
    with pytest.raises(slurm.SlurmError, match=r"(?i)partition"):
        submit(cluster, tmp_path, "rslurm05", 1, 1, partition="nosuchpart")
    with pytest.raises(slurm.SlurmError, match=r"(?i)not available|gres|configuration"):
        submit(cluster, tmp_path, "rslurm06", 9, 1)
    with pytest.raises(ValueError, match="Slurm name"):
        slurm.sbatch_argv("rslurm07", "/tmp", 1, partition="gpu --wrap=evil")


def test_output_parsing_without_a_cluster() -> None:
    assert slurm.parse_squeue("12|PENDING|QOSMaxGRESPerUser\n13|RUNNING|None\nx|y\n") == {
        "12": {"state": "PENDING", "reason": "QOSMaxGRESPerUser"},
        "13": {"state": "RUNNING", "reason": ""}}
    shown = slurm.parse_scontrol(
        "JobId=14 JobName=labdeck-r1 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n")
    assert shown == {"14": {"state": "TIMEOUT", "reason": "TimeLimit", "exit_code": 0,
                            "signal": 15}}
    assert slurm.SLURM_KINDS["NODE_FAIL"] == "lost" and slurm.SLURM_KINDS["TIMEOUT"] == \
        "timed_out"
