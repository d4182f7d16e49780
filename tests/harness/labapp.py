"""A Labdeck instance for integration tests: its own LABDECK_HOME with the lab's hosts
added and their keys trusted, the ``labdeck`` CLI (tests.harness.labcli) and ``labdeck
serve`` as subprocesses, and a look at its store and at the run folders on the hosts.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from app.core.queue.runs import Run, RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.hostkeys import KnownHosts
from ssh_backend.hostspec import HostSpec
from tests.harness.labcli import REPO, LabCli
from tests.harness.sshd import SshdHost

ATTEMPT_SUFFIX = re.compile(r"-a[0-9]+$")


def base_run_id(host_run_id: str) -> str:
    """The queue's run id of a host folder name (retries add ``-a<N>``)."""
    return ATTEMPT_SUFFIX.sub("", host_run_id)


class LabApp(LabCli):
    """One user's Labdeck: ``app("submit", …)`` runs the CLI; ``serve()`` the dispatcher."""

    def __init__(self, root: Path, hosts: list[SshdHost],
                 spec: Callable[[SshdHost], HostSpec] = SshdHost.spec) -> None:
        """``spec`` says how this Labdeck reaches a host (default: as root, lab key)."""
        super().__init__(root, env={"USER": "tester"})  # HOME: no ~/.ssh of this machine
        self.hosts = {host.name: host for host in hosts}
        with Store.open(self.store_path) as store:
            for host in hosts:
                store.add_host(spec(host))
        known = KnownHosts(self.home / "known_hosts")
        for host in hosts:
            host.trust(known)
        self._serving: list[tuple[subprocess.Popen[bytes], TextIO]] = []

    def submit(self, *args: str) -> list[str]:
        result = self("submit", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    # -- serve ---------------------------------------------------------------------
    def serve(
        self, *args: str, wrap: Callable[[list[str]], list[str]] | None = None
    ) -> subprocess.Popen[bytes]:
        """``labdeck serve ARGS`` in the background; its output goes to serve-N.log.
        ``wrap`` wraps the command line (to run it in a network namespace)."""
        log = (self.root / f"serve-{len(self._serving)}.log").open("w")
        command = self.command("serve", *args)
        proc = subprocess.Popen(
            wrap(command) if wrap else command, cwd=REPO, env=self.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        self._serving.append((proc, log))
        return proc

    def serve_output(self) -> str:
        return "".join(
            (self.root / f"serve-{i}.log").read_text() for i in range(len(self._serving))
        )

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
        """SIGTERM and wait: the clean way ``labdeck serve`` is stopped."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def close(self) -> None:
        for proc, log in self._serving:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.close()

    # -- the store -----------------------------------------------------------------
    def runs(self, *states: RunState) -> list[Run]:
        with Store.open(self.store_path) as store:
            return RunStore(store).list_runs(states or None)

    def run(self, run_id: str) -> Run:
        with Store.open(self.store_path) as store:
            run = RunStore(store).get(run_id)
        assert run is not None, run_id
        return run

    def wait_runs(self, predicate: Callable[[list[Run]], bool], timeout: float,
                  proc: subprocess.Popen[bytes] | None = None) -> list[Run]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs()
            if predicate(runs):
                return runs
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"serve exited ({proc.returncode}):\n{self.serve_output()}")
            if time.monotonic() > deadline:
                states: dict[str, int] = {}
                for run in runs:
                    states[run.state] = states.get(run.state, 0) + 1
                raise AssertionError(f"timed out; runs by state: {states}\n"
                                     f"{self.serve_output()[-3000:]}")
            time.sleep(0.2)


def run_dirs(host: SshdHost, home: Path | None = None) -> dict[str, Path]:
    """Host folder name → run folder, for every run folder on ``host`` (of the user
    whose HOME there is ``home``; root's by default)."""
    root = (home or host.home) / ".labdeck" / "runs"
    if not root.is_dir():
        return {}
    return {path.name: path for path in root.iterdir() if path.is_dir()}


def run_record(folder: Path) -> dict[str, Any]:
    """What the wrapper recorded: state.json, the exit code, and when it was written."""
    state = json.loads((folder / "state.json").read_text())
    code_file = folder / "exit_code"
    ended = code_file.stat().st_mtime if code_file.exists() else None
    code = int(code_file.read_text()) if code_file.exists() else None
    return {"state": state, "exit_code": code, "ended": ended}
