"""The real Slurm the Slurm-pool tests stand on: munged, slurmctld and slurmd from Debian's
packages, GPUs as mknod character devices in GRES. Two ``--gres=gpu:2`` jobs run side by
side with Slurm's own ``CUDA_VISIBLE_DEVICES`` (0,1 and 2,3), and states and exit codes
read back as a Slurm pool will read them."""

from __future__ import annotations

import re
import time

import pytest

from tests.harness.slurm import SlurmCluster

pytestmark = [pytest.mark.slow]

JOB = ("echo start $(date +%s.%N) CVD=$CUDA_VISIBLE_DEVICES; sleep 3; "
       "echo end $(date +%s.%N); exit 3")


@pytest.fixture(scope="module")
def cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    return slurm_cluster


def job_state(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    shown = cluster.run("scontrol", "show", "job", "-o", job_id).stdout
    return dict(re.findall(r"(\w+)=(\S+)", shown))


def wait_state(cluster: SlurmCluster, job_id: str, states: set[str],
               timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        found = job_state(cluster, job_id)
        if found.get("JobState") in states:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.3)


@pytest.mark.timeout(120)
def test_two_gpu_jobs_share_the_node_with_slurms_own_devices(
    cluster: SlurmCluster, tmp_path: object
) -> None:
    ids = []
    for n in (1, 2):
        out = cluster.root / f"job{n}.out"
        done = cluster.run("sbatch", "--parsable", "--gres=gpu:2", f"--output={out}",
                           "--wrap", JOB)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip().split(";")[0])
    ends = [wait_state(cluster, job_id, {"COMPLETED", "FAILED"}) for job_id in ids]
    assert [(e["JobState"], e["ExitCode"]) for e in ends] == [("FAILED", "3:0")] * 2
    lines = [(cluster.root / f"job{n}.out").read_text().split() for n in (1, 2)]
    assert sorted(words[2] for words in lines) == ["CVD=0,1", "CVD=2,3"]
    starts, finishes = [float(w[1]) for w in lines], [float(w[4]) for w in lines]
    assert max(starts) < min(finishes)  # side by side, not one after the other


@pytest.mark.timeout(120)
def test_a_cancelled_job_reads_cancelled(cluster: SlurmCluster) -> None:
    done = cluster.run("sbatch", "--parsable", "--gres=gpu:1", "--output=/dev/null",
                       "--wrap", "sleep 60")
    job_id = done.stdout.strip().split(";")[0]
    wait_state(cluster, job_id, {"RUNNING"})
    assert cluster.run("scancel", "--signal=TERM", "--full", job_id).returncode == 0
    assert wait_state(cluster, job_id, {"CANCELLED", "FAILED", "COMPLETED"})[
        "JobState"] in ("CANCELLED", "FAILED")
