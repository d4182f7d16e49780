"""GPU sample latency and remote CPU per sample: Labdeck's agent stream over one
persistent SSH channel against one ``ssh host nvidia-smi --query-gpu …`` per sample (the
gpustat-web / cron way), both on real ``sshd`` hosts with the same fake 8-GPU nvidia-smi.

    .venv/bin/python tests/bench/bench_sampling.py [smoke|quick|full]

Latency per sample: for the baseline, from starting ``ssh`` to the parsed CSV in hand;
for the agent, from the host's sample timestamp (taken right after the GPU read) to the
decoded Sample in the app (one clock: the hosts are on loopback). Remote CPU per sample:
user + system time of the host's whole sshd process tree (connections, shells, agent,
nvidia-smi, counted through their reaping parents too) across the window, divided by the
samples taken. Each side has its own sshd so neither pays for the other.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssh_backend.hostspec import AgentOptions
from tests.bench.benchlib import (
    StreamListener,
    figure,
    median,
    open_lab_session,
    openssh_argv,
    percentile,
    pick,
    run_ssh,
    tree_cpu_s,
    tree_cpu_split,
    write_openssh_known_hosts,
)
from tests.harness.sshd import HARNESS_BIN, SshdLab

GPUS = 8
# The same fields the agent's nvidia-smi backend streams (ssh_backend/agent/gpu_smi.py).
QUERY = ("nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.total,"
         "temperature.gpu,power.draw,power.limit,fan.speed --format=csv,noheader,nounits")


def parse_csv(out: bytes) -> list[list[str]]:
    rows = [line.split(", ") for line in out.decode().splitlines() if line.strip()]
    if len(rows) != GPUS or any(len(r) != 10 for r in rows):
        raise RuntimeError(f"unexpected nvidia-smi output: {out[:200]!r}")
    float(rows[0][3])  # a number where the load is
    return rows


def agent_stream(lab: SshdLab, root: Path, interval_s: float, samples: int
                 ) -> tuple[list[float], float, float]:
    """(latency of each sample in s, remote CPU s per sample, the part of it spent in
    processes that exited meanwhile) of the agent stream."""
    host = lab.add_host("agent-host", env={"FAKE_SMI_GPUS": str(GPUS)}, fake_smi=True)
    listener = StreamListener()
    options = AgentOptions(interval_s=interval_s, backend="smi",
                           nvidia_smi=str(HARNESS_BIN / "nvidia-smi"))
    session = open_lab_session(host, root, listener, agent=options)
    try:
        if listener.hello is None or listener.hello.backend != "smi":
            raise RuntimeError(f"agent did not use nvidia-smi: {listener.hello}")
        listener.wait_samples(3, timeout=30)  # past the agent's start-up
        start = len(listener.samples)
        own0, reaped0 = tree_cpu_split(host.tree())
        listener.wait_samples(start + samples, timeout=samples * interval_s * 4 + 30)
        own1, reaped1 = tree_cpu_split(host.tree())
        got = listener.samples[start:start + samples]
    finally:
        session.stop()
    if any(len(s.gpus) != GPUS for _, s in got):
        raise RuntimeError("the agent reported the wrong number of GPUs")
    latencies = [arrived - sample.time for arrived, sample in got]
    total = (own1 + reaped1 - own0 - reaped0) / samples
    return latencies, total, (reaped1 - reaped0) / samples


def ssh_per_sample(lab: SshdLab, root: Path, samples: int) -> tuple[list[float], float]:
    """(latency of each sample in s, remote CPU s per sample) of one ssh per sample."""
    host = lab.add_host("poll-host", env={"FAKE_SMI_GPUS": str(GPUS)}, fake_smi=True)
    argv = openssh_argv(host, write_openssh_known_hosts([host], root / "ssh_known"), QUERY)
    parse_csv(run_ssh(argv))  # warm the page cache for both sides alike
    time.sleep(0.3)
    cpu0 = tree_cpu_s(host.tree())
    latencies = []
    for _ in range(samples):
        started = time.time()
        parse_csv(run_ssh(argv))
        latencies.append(time.time() - started)
    time.sleep(0.3)  # the last connection's sshd finishes and is reaped
    cpu1 = tree_cpu_s(host.tree())
    return latencies, (cpu1 - cpu0) / samples


def measure(mode: str) -> list[dict[str, Any]]:
    interval = pick(mode, 0.2, 0.5, 1.0)
    samples = pick(mode, 4, 16, 40)
    polls = pick(mode, 3, 12, 30)
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-sampling-") as tmp:
        root = Path(tmp)
        lab = SshdLab(root / "lab")
        try:
            agent_lat, agent_cpu, agent_reaped = agent_stream(lab, root, interval, samples)
            ssh_lat, ssh_cpu = ssh_per_sample(lab, root, polls)
        finally:
            lab.close()
    note = (f"agent at {interval:g} s interval, {samples} samples (p95 "
            f"{percentile(agent_lat, 0.95) * 1e3:.1f} ms); ssh: {polls} calls "
            f"(p95 {percentile(ssh_lat, 0.95) * 1e3:.0f} ms); {GPUS} GPUs, fake nvidia-smi")
    return [
        figure("GPU sample latency: stream (host stamp → app)", median(agent_lat) * 1e3, "ms",
               baseline=median(ssh_lat) * 1e3, baseline_label="ssh host nvidia-smi per sample",
               target="≥ 10× lower", min_ratio=10, note=note),
        figure("remote CPU per sample", agent_cpu * 1e3, "ms CPU",
               baseline=ssh_cpu * 1e3, baseline_label="ssh host nvidia-smi per sample",
               target="≥ 5× lower", min_ratio=5,
               note=f"user+system of each host's sshd process tree; agent: "
                    f"{agent_reaped * 1e3:.0f} ms of it in processes that exited meanwhile "
                    f"(the agent's background nvidia-smi --query-compute-apps refresh)"),
    ]


if __name__ == "__main__":
    for row in measure(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)
