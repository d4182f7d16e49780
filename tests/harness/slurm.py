"""A real Slurm for the tests: Debian's ``munged``, ``slurmctld`` and ``slurmd``, configured
in a folder of their own (one node, ``select/cons_tres``, ``GresTypes=gpu``), with GPUs
that are character devices made with ``mknod … c 195 N`` in that folder, so Slurm
assigns them and sets ``CUDA_VISIBLE_DEVICES`` for real.

Needs root (munged, slurmd and mknod) and the packages ``slurmctld slurmd slurm-client
munge`` (the test command installs them). Clients find this cluster through ``SLURM_CONF``
(``cluster.env()``); nothing of the machine's own Slurm configuration is touched. Jobs
stay known to ``scontrol`` for an hour after they end (``MinJobAge``): there is no
accounting database here, so ``sacct`` says accounting is disabled, as on a cluster
without slurmdbd.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")
NODE = "labnode"
PARTITION = "gpu"
GPU_TYPE = "h100"


def available() -> str | None:
    """Why a real Slurm cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a real Slurm needs root (munged, slurmd, mknod)"
    missing = [d for d in DAEMONS if shutil.which(d, path="/usr/sbin:/usr/bin") is None]
    if missing or shutil.which("sbatch") is None:
        return "Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SlurmCluster:
    """One node with ``gpus`` GPUs in partition ``gpu``; ``start()`` returns once
    ``sinfo`` reports the node idle, ``stop()`` ends every daemon and job."""

    def __init__(self, gpus: int = 4, cpus: int = 2) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="labdeck-slurm-"))
        self.root.chmod(0o755)  # every test user reads the configuration and the socket
        self.gpus = gpus
        self.cpus = cpus
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge-run" / "munge.socket"

    # -- set-up ----------------------------------------------------------------------
    def _write_config(self) -> None:
        for name, mode in (("munge-key", 0o700), ("munge-run", 0o755), ("state", 0o700),
                           ("spool", 0o755), ("log", 0o755), ("dev", 0o755)):
            (self.root / name).mkdir(mode=mode)
            (self.root / name).chmod(mode)
        key = self.root / "munge-key" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        for index in range(self.gpus):
            os.mknod(self.root / "dev" / f"nvidia{index}", 0o666 | 0o020000,
                     os.makedev(195, index))
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=labdeck-test",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={self.socket}", "CredType=cred/munge",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            # No cgroups in a container: processes are tracked by their parents.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "GresTypes=gpu", "MpiDefault=none", "ReturnToService=2",
            "SchedulerType=sched/backfill", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "MinJobAge=3600", "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0",
            "KillWait=5",
            f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} "
            f"CPUs={self.cpus} RealMemory=2000 Gres=gpu:{GPU_TYPE}:{self.gpus} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        (self.root / "gres.conf").write_text(
            "AutoDetect=off\n"
            f"NodeName={NODE} Name=gpu Type={GPU_TYPE} "
            f"File={r}/dev/nvidia[0-{self.gpus - 1}]\n")

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster (argument list, no shell)."""
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        self._write_config()
        key_dir, run_dir = self.root / "munge-key", self.root / "munge-run"
        subprocess.run(["munged", "--force", f"--socket={self.socket}",
                        f"--key-file={key_dir / 'munge.key'}",
                        f"--log-file={key_dir / 'munged.log'}",
                        f"--pid-file={run_dir / 'munged.pid'}",
                        f"--seed-file={key_dir / 'munged.seed'}"], check=True, timeout=30)
        subprocess.run(["slurmctld", "-f", str(self.conf)], env=self.env(), check=True,
                       timeout=30)
        subprocess.run(["slurmd", "-f", str(self.conf), "-N", NODE], env=self.env(),
                       check=True, timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            state = self.run("sinfo", "-h", "-n", NODE, "-o", "%T").stdout.strip()
            if state == "idle":
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Slurm node is {state or 'not reported'} after "
                                   f"{timeout:.0f} s; see {self.root}/log")
            time.sleep(0.5)

    # -- tear-down -------------------------------------------------------------------
    def _pid(self, name: str) -> int | None:
        for path in (self.root / f"{name}.pid", self.root / "munge-run" / f"{name}.pid"):
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return None

    def stop(self) -> None:
        """Cancel every job, then end slurmd, slurmctld and munged; remove the folder."""
        if self.conf.exists():
            self.run("scancel", "--quiet", f"--partition={PARTITION}", timeout=15)
        for name in DAEMONS:
            pid = self._pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, 9)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
