"""The chaos run: three sshd hosts and ``labdeck serve`` in one network namespace, a
queue of short runs with known output, and real faults injected at random meanwhile
(``chaos_faults``); afterwards the hosts' run folders and the store are checked
(``chaos_check``) and the figures printed.

    python -m tests.reliability.chaos [--runs 300] [--seed N] [--json PATH] [--quick]

Without ``--quick`` the faults are full size (network cuts of 1–20 s). Needs root (network
namespaces) and ``/usr/sbin/sshd``. Exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.queue.runs import FINISHED
from tests.harness.labapp import LabApp
from tests.harness.netfault import NetNamespace
from tests.harness.nshost import start_in
from tests.harness.sshd import SshdLab
from tests.reliability.chaos_check import verify
from tests.reliability.chaos_faults import KINDS, FaultInjector, FaultScale

JOB = Path(__file__).with_name("chaos_job.py")
HOSTS = 3


@dataclass(frozen=True)
class ChaosConfig:
    runs: int = 300
    seed: int = 1
    scale: FaultScale = field(default_factory=lambda: FaultScale(
        net_cut=(1.0, 20.0), freeze=(1.0, 8.0), down=(0.5, 4.0), gap=(0.5, 3.0)))
    # Faults stop when every run has finished and every kind was injected, or after this.
    fault_window_s: float = 600.0
    final_wait_s: float = 300.0
    max_retries: int = 8
    poll_s: float = 0.5


def quick(seed: int, runs: int = 48) -> ChaosConfig:
    """The test command's variant: fewer runs, short faults (a few minutes at most)."""
    return ChaosConfig(runs=runs, seed=seed, fault_window_s=75.0, final_wait_s=90.0,
                       scale=FaultScale(net_cut=(1.0, 4.0), freeze=(1.0, 3.0),
                                        down=(0.3, 1.5), gap=(0.3, 1.5)))


class Serving:
    """The one ``labdeck serve`` in the namespace; SIGKILLed and replaced on demand."""

    def __init__(self, app: LabApp, ns: NetNamespace, poll_s: float) -> None:
        self.app, self.ns, self.poll = app, ns, str(poll_s)
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        with self.lock:
            self.proc = self.app.serve("--poll", self.poll, *extra, wrap=self.ns.argv)
            return self.proc

    def kill_and_restart(self, pause: float) -> None:
        with self.lock:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) by itself:\n"
                                     f"{self.app.serve_output()[-3000:]}")
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1
        time.sleep(pause)
        self.start()

    def stop(self) -> int | None:
        with self.lock:
            if self.proc is None:
                return None
            return self.app.stop(self.proc, timeout=30)


def _job_file(root: Path, config: ChaosConfig) -> Path:
    seeds = ", ".join(str(config.seed * 100_000 + i) for i in range(config.runs))
    path = root / "chaos.yaml"
    path.write_text(
        "name: chaos\n"
        f"command: [python3, {json.dumps(str(JOB))}, --seed, '0']\n"
        "retry_on_lost: true\n"
        f"max_retries: {config.max_retries}\n"
        f"sweep:\n  seed: [{seeds}]\n"
    )
    return path


def run_chaos(root: Path, config: ChaosConfig) -> dict[str, Any]:
    """One chaos run under ``root``; returns the figures, with ``problems`` (empty: pass)."""
    began = time.monotonic()
    ns = NetNamespace()
    lab = SshdLab(root / "lab")
    app: LabApp | None = None
    injector: FaultInjector | None = None
    tag = f"{os.getpid() % 1000}"
    try:
        hosts = [lab.add_host(f"chaos{tag}-ws{i}", start=False) for i in range(1, HOSTS + 1)]
        for host in hosts:
            start_in(ns, host)
        app = LabApp(root / "app", hosts)
        submitted = app.submit(str(_job_file(root, config)))
        assert len(submitted) == config.runs, submitted[:5]
        serving = Serving(app, ns, config.poll_s)
        labapp = app

        def finished() -> int:
            return len(labapp.runs(*FINISHED))

        injector = FaultInjector(ns, hosts, serving.kill_and_restart, finished,
                                 config.seed, config.scale)
        serving.start()
        thread = threading.Thread(target=injector.run, name="chaos-faults", daemon=True)
        thread.start()
        deadline = time.monotonic() + config.fault_window_s
        while time.monotonic() < deadline and thread.is_alive():
            if injector.all_kinds_done() and finished() == config.runs:
                break
            time.sleep(0.5)
        injector.stop.set()
        thread.join(60)
        fault_s = time.monotonic() - began
        if injector.error is not None:
            raise injector.error
        injector.heal()
        serving.stop()
        final = serving.start("--until-done")
        try:
            final_code: int | None = final.wait(config.final_wait_s)
        except subprocess.TimeoutExpired:
            final_code = None
        serving.stop()
        verdict = verify(app.store_path, hosts, injector.log.reboots, config.max_retries)
        figures = verdict.figures
        if final_code != 0:
            how = "timed out" if final_code is None else f"exited {final_code}"
            verdict.problems.append(f"the final serve --until-done {how}:\n"
                                    f"{app.serve_output()[-3000:]}")
        figures.update(
            seed=config.seed, faults={k: injector.log.counts[k] for k in KINDS},
            faults_total=sum(injector.log.counts.values()),
            finished_at_fault=injector.log.finished_at_fault, app_kills=serving.kills,
            fault_phase_s=round(fault_s, 1), duration_s=round(time.monotonic() - began, 1),
            problems=verdict.problems, events=injector.log.events,
        )
        return figures
    finally:
        if injector is not None:
            injector.stop.set()
            injector.kill_runs()
        if app is not None:
            app.close()
        lab.close()
        ns.close()


def table(figures: dict[str, Any]) -> str:
    """The figures as a small text table."""
    faults = figures["faults"]
    rows = [
        ("seed", figures["seed"]),
        ("faults injected", f"{figures['faults_total']} ("
         + ", ".join(f"{k} {v}" for k, v in faults.items()) + ")"),
        ("runs", figures["runs"]),
        ("succeeded (exit 0)", figures["succeeded"]),
        ("failed as planned (exit≠0)", figures["failed_as_expected"]),
        ("lost and retried", f"{figures['lost_retried']} runs "
         f"({figures['attempts_killed']} attempts killed by reboots)"),
        ("lost for good (retries ran out)", figures["lost_final"]),
        ("missing / duplicated", f"{figures['missing']} / {figures['duplicated']}"),
        ("wrong exit code or state", figures["wrong_exit"]),
        ("console mismatches (sha256)", figures["console_mismatch"]),
        ("metric points missing / duplicated",
         f"{figures['metric_missing']} / {figures['metric_duplicated']}"),
        ("GPU double-bookings", figures["gpu_overlaps"]),
        ("PRAGMA integrity_check", figures["integrity"]),
        ("duration", f"{figures['duration_s']} s (faults for {figures['fault_phase_s']} s)"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.chaos",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(2), "big"))
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="short faults (test variant)")
    args = parser.parse_args(argv)
    config = quick(args.seed, args.runs) if args.quick else ChaosConfig(args.runs, args.seed)
    with tempfile.TemporaryDirectory(prefix="labdeck-chaos-") as tmp:
        figures = run_chaos(Path(tmp), config)
    print(table(figures))
    for problem in figures["problems"]:
        print("PROBLEM:", problem)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
