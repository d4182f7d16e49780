"""The ``labdeck`` command line as a subprocess (``python -m app``) with a private
LABDECK_HOME and HOME, so no file of the person running the tests leaks in or out.

``LabCli(root)`` keeps everything under ``root``: ``labdeck/`` (LABDECK_HOME) and ``user/``
(HOME). ``cli("hosts", "ls")`` gives text, ``cli.raw(…)`` bytes, ``cli.popen(…)`` a
process to drive (a terminal, Ctrl-C, ``logs -f``). ``StoreCli`` is a LabCli over a
store the test fills itself; ``tests.harness.labapp.LabApp`` one with sshd hosts added
and trusted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.core.jobs.jobspec import JobSpec
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.harness.file_keyring import BACKEND, ENV_VAR

REPO = Path(__file__).resolve().parents[2]


class LabCli:
    """``python -m app ARGS`` in the repository with its own LABDECK_HOME and HOME."""

    def __init__(self, root: Path, *, home: Path | None = None,
                 user_home: Path | None = None, env: dict[str, str] | None = None,
                 inherit_env: bool = False, timeout: float = 60) -> None:
        """``env`` adds to (or overrides) the variables; ``inherit_env`` starts from this
        process's environment instead of a minimal one (PATH, LANG)."""
        self.root = root
        self.home = home or root / "labdeck"
        self.user_home = user_home or root / "user"
        self.user_home.mkdir(parents=True, exist_ok=True)
        base = dict(os.environ) if inherit_env else {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        self.env = {**base, "LABDECK_HOME": str(self.home), "HOME": str(self.user_home),
                    **(env or {})}
        self.timeout = timeout

    @classmethod
    def of_this_process(cls, timeout: float = 60) -> LabCli:
        """The CLI over this process's LABDECK_HOME and HOME (a test that set them and
        opens the same store in-process)."""
        home, user = Path(os.environ["LABDECK_HOME"]), Path(os.environ["HOME"])
        return cls(home.parent, home=home, user_home=user, inherit_env=True,
                   timeout=timeout)

    def ok(self, *args: str) -> str:
        """Run to the end, which must be a success; its stdout."""
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    @property
    def store_path(self) -> Path:
        return self.home / "labdeck.sqlite3"

    def use_file_keyring(self, path: Path) -> Path:
        """Secrets go to the test keyring file ``path`` (tests/harness/file_keyring.py);
        its folder is made private."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env.update({"PYTHON_KEYRING_BACKEND": BACKEND, ENV_VAR: str(path)})
        self.keyring_file = path
        return path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "app", *args]

    def __call__(self, *args: str, timeout: float | None = None, input: str | None = None,
                 stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        """Run to the end; stdout and stderr as text."""
        return subprocess.run(
            self.command(*args), cwd=REPO, env=self.env, capture_output=True, text=True,
            timeout=timeout or self.timeout, check=False,
            **({"input": input} if input is not None else {"stdin": stdin}),
        )

    def raw(self, *args: str, input: bytes | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run to the end; stdout and stderr as bytes (``input`` is piped to stdin)."""
        return subprocess.run(
            self.command(*args), cwd=REPO, env=self.env, capture_output=True,
            timeout=timeout or self.timeout, check=False,
            **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
        )

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start it and return at once (stdin is /dev/null unless ``kwargs`` say)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.command(*args), cwd=REPO, env=self.env, **kwargs)


class StoreCli(LabCli):
    """The CLI over a store this test fills directly (runs, console, curves): what the
    read-only commands (ls, show, logs, metrics) print of it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.store = Store.open(self.store_path)
        self.runs = RunStore(self.store)
        self.metrics = MetricStore(self.store)

    def finished_run(self, host: str = "ws1") -> str:
        """A run that succeeded on ``host`` (exit 0, GPU 0)."""
        (run_id,) = self.runs.submit([JobSpec(name="job", argv=("true",)).to_dict()], "al")
        assert self.runs.claim(run_id, host, [0], ["GPU-0"])
        assert self.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING)
        assert self.runs.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED,
                                    exit_code=0, ended_at=time.time())
        return run_id

    def close(self) -> None:
        self.store.close()
