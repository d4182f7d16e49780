"""Launch: submit → the job's process running on a free GPU, over a warm connection.

    .venv/bin/python tests/bench/bench_launch.py [smoke|quick|full]

Labdeck: pick a free GPU from the session's latest sample, then
``ssh_backend.runs.launch`` over the already open HostSession (upload of nothing, one
run-control request: folder, GPU lease, detached wrapper, job started). Baseline: the
real ``ssh`` client running ``nohup cmd >log 2>&1 &`` on the same host (no lease, no
record, a fresh connection per launch, as a script would). Both jobs create a marker file
as their first act; the time counts until that file exists (the host is on loopback, its
HOME is a local folder), so "running" means the same thing on both sides.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssh_backend.hostspec import AgentOptions
from ssh_backend.runs import LaunchRequest, launch
from tests.bench.benchlib import (
    StreamListener,
    figure,
    median,
    open_lab_session,
    openssh_argv,
    pick,
    run_ssh,
    write_openssh_known_hosts,
)
from tests.harness.runhost import RunHost
from tests.harness.sshd import SshdHost, SshdLab

GPUS = 8


def wait_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.001)


def free_gpu(listener: StreamListener, taken: set[int]) -> tuple[int, str]:
    """A GPU of the latest sample with no process and no lease, not used by this bench."""
    sample = listener.samples[-1][1]
    for gpu in sample.gpus:
        if not gpu.processes and gpu.leased_by is None and gpu.index not in taken:
            return gpu.index, gpu.uuid
    raise RuntimeError("no free GPU left on the host")


def labdeck_launches(host: SshdHost, root: Path, count: int) -> list[float]:
    listener = StreamListener()
    options = AgentOptions(interval_s=0.5, backend="sim", sim_gpus=GPUS)
    session = open_lab_session(host, root, listener, agent=options)
    times, taken = [], set()
    try:
        for k in range(count):
            marker = host.home / f"labdeck-started-{k}"
            job = {"argv": ["sh", "-c", f"touch {shlex.quote(str(marker))}; exec sleep 120"],
                   "sim_host": host.name}
            started = time.perf_counter()
            index, uuid = free_gpu(listener, taken)
            status = launch(session, LaunchRequest(f"bench-launch-{k}", job, (index,), (uuid,)))
            wait_file(marker)
            times.append(time.perf_counter() - started)
            if status.kind != "running":
                raise RuntimeError(f"launch {k}: {status}")
            taken.add(index)
    finally:
        session.stop()
        RunHost(host.root).cleanup()
    return times


def nohup_launches(host: SshdHost, root: Path, count: int) -> list[float]:
    argv_known = write_openssh_known_hosts([host], root / "ssh_known")
    times, pids = [], []
    try:
        for k in range(count):
            marker = host.home / f"nohup-started-{k}"
            job = f"touch {shlex.quote(str(marker))}; exec sleep 120"
            remote = (f"CUDA_VISIBLE_DEVICES={k % GPUS} nohup sh -c {shlex.quote(job)} "
                      f">{shlex.quote(str(host.home / f'nohup-{k}.log'))} 2>&1 & echo $!")
            started = time.perf_counter()
            out = run_ssh(openssh_argv(host, argv_known, remote))
            wait_file(marker)
            times.append(time.perf_counter() - started)
            pids.append(int(out.split()[0]))
    finally:
        for pid in pids:  # only the jobs this benchmark started, by their pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return times


def measure(mode: str) -> list[dict[str, Any]]:
    count = pick(mode, 2, 5, 8)
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-launch-") as tmp:
        root = Path(tmp)
        lab = SshdLab(root / "lab")
        try:
            host = lab.add_host("launch-host")
            ours = labdeck_launches(host, root, count)
            theirs = nohup_launches(host, root, count)
        finally:
            lab.close()
    return [figure(
        "launch: submit → process running (warm)", median(ours), "s",
        baseline=median(theirs), baseline_label="ssh host 'nohup cmd >log 2>&1 &'",
        target="< 1 s", max_value=1.0,
        note=f"median of {count}; Labdeck also takes a GPU lease and records the run "
             f"(max {max(ours):.2f} s); baseline max {max(theirs):.2f} s",
    )]


if __name__ == "__main__":
    for row in measure(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)
