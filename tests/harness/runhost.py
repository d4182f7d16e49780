"""This machine as a run host for tests: runctl.py run as a real process with its own
HOME, lease namespace and boot id file, plus waits and process checks around it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AGENT_DIR = ROOT / "ssh_backend" / "agent"
RUNCTL = AGENT_DIR / "runctl.py"
sys.path.insert(0, str(AGENT_DIR))
import hostinfo  # noqa: E402


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


def process_group(pid: int | str) -> int | None:
    """The process group of ``pid``; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[2])


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def python_job(code: str) -> list[str]:
    """argv of a job that runs ``code`` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-c", code]


class RunHost:
    """A fake host rooted at ``root`` (HOME, boot id file) with leases of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        # Leases of this fake host only (abstract socket names are machine-wide).
        self.lease_ns = f"runhost-{os.getpid()}-{id(self):x}"
        self.boot_id_file = root / "boot_id"
        self.home.mkdir(parents=True, exist_ok=True)
        # The host's lab board: a sticky folder of its own, as /var/tmp is on a real host.
        self.board_dir = root / "board"
        self.board_dir.mkdir(exist_ok=True)
        self.board_dir.chmod(0o1777)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "LABDECK_LEASE_NS": self.lease_ns,
            "LABDECK_BOARD_DIR": str(self.board_dir),
            "LABDECK_BOOT_ID_FILE": str(self.boot_id_file),
        }

    def run_dir(self, run_id: str) -> Path:
        return self.home / ".labdeck" / "runs" / run_id

    def ctl_raw(self, data: bytes, timeout: float = 20.0) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-B", str(RUNCTL)], input=data, capture_output=True,
            env=self.env(), timeout=timeout, check=False,
        )

    def ctl(self, request: dict[str, Any]) -> dict[str, Any]:
        done = self.ctl_raw(json.dumps(request).encode())
        assert done.returncode == 0, done.stderr.decode()
        reply: dict[str, Any] = json.loads(done.stdout)
        return reply

    def launch(
        self,
        run_id: str,
        argv: list[str] | None = None,
        *,
        gpus: tuple[tuple[int, str], ...] = ((0, "GPU-test-0"),),
        **job: Any,
    ) -> dict[str, Any]:
        """The reply to a launch of ``argv`` (or ``shell=...``) on ``gpus``."""
        body = {"argv": argv or [], "shell": None, "env": {}, "setup": [], "workdir": None,
                "time_limit_s": None, "sim_host": None, **job}
        return self.ctl({
            "op": "launch", "run_id": run_id, "job": body,
            "gpu_indices": [i for i, _u in gpus], "gpu_uuids": [u for _i, u in gpus],
        })

    def status(self, run_id: str) -> dict[str, Any]:
        reply = self.ctl({"op": "reconcile", "run_ids": [run_id]})
        assert reply["ok"], reply
        status: dict[str, Any] = reply["statuses"][run_id]
        return status

    def wait_kind(self, run_id: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if kind == "finished":
            # Cheap first: the exit code file, without a runctl process per poll.
            exit_code = self.run_dir(run_id) / "exit_code"
            wait_until(exit_code.exists, timeout, f"{run_id} to write its exit code")

        def reached() -> bool:
            found.update(self.status(run_id))
            return found["kind"] == kind

        wait_until(reached, timeout, f"{run_id} to be {kind} (last: {found})", every=0.1)
        return found

    def output(self, run_id: str) -> bytes:
        return (self.run_dir(run_id) / "output.log").read_bytes()

    def state(self, run_id: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.run_dir(run_id) / "state.json").read_text())
        return state

    def cleanup(self) -> None:
        """Kill every wrapper and job group still alive under this host (failed tests)."""
        runs = self.home / ".labdeck" / "runs"
        if not runs.is_dir():
            return
        for folder in runs.iterdir():
            for name, kill in (("state.json", os.killpg), ("wrapper.json", os.kill)):
                try:
                    record = json.loads((folder / name).read_text())
                except (OSError, ValueError):
                    continue
                # Only the very process recorded: never a pid reused by someone else's.
                if hostinfo.alive(record.get("pid"), record.get("start_ticks")):
                    try:
                        kill(record["pid"], signal.SIGKILL)
                    except OSError:
                        pass


def gated_job(host: RunHost, name: str, code: int = 0) -> list[str]:
    """A job that waits for a file ``<root>/<name>`` to appear, then exits ``code``."""
    gate = host.root / name
    return python_job(
        f"import os,sys,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
        f"sys.exit({code})"
    )
