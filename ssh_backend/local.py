"""LocalSession: this machine as a host, without SSH — the agent runs as a child process.

Same interface, states and heartbeat as HostSession (the reader is shared); the agent is
started from the package folder with this interpreter, nothing is uploaded. Run control
runs the package's runctl.py the same way, and a run's snapshot is written in place.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from ssh_backend.agent_channel import AgentReader, StderrTail
from ssh_backend.connect import Timeouts
from ssh_backend.events import SessionListener, SessionUnavailable
from ssh_backend.hostspec import HostSpec
from ssh_backend.runs import LaunchRefused, check_run_id, decode_reply, upload_parts
from ssh_backend.states import HostState
from ssh_backend.worker import Outcome, WorkerSession, outcome_of

AGENT_SCRIPT = Path(__file__).resolve().parent / "agent" / "agent.py"
RUNCTL_SCRIPT = AGENT_SCRIPT.with_name("runctl.py")
TERMINATE_GRACE_S = 2.0


def agent_python() -> str:
    """The interpreter for the agent on this machine: this one, except in a frozen build,
    where ``sys.executable`` is Labdeck itself and the system's python3 runs the agent."""
    return "python3" if getattr(sys, "frozen", False) else sys.executable


class ProcessStream:
    """A child process's pipes as an AgentStream; stderr is read in the same select."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin and process.stdout and process.stderr
        self.process = process
        self._stdin = process.stdin
        self._out = process.stdout.fileno()
        self._err: int | None = process.stderr.fileno()
        self._stderr = StderrTail()

    def read(self, timeout: float) -> bytes | None:
        fds = [self._out] + ([self._err] if self._err is not None else [])
        ready, _w, _x = select.select(fds, [], [], timeout)
        if self._err is not None and self._err in ready:
            chunk = os.read(self._err, 65536)
            if chunk:
                self._stderr.add(chunk)
            else:
                self._err = None  # stderr closed; stdout may still have data
        if self._out in ready:
            return os.read(self._out, 65536)
        return None

    def write(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
            self._stdin.flush()
        except ValueError as exc:  # write to a closed file
            raise OSError(str(exc)) from None

    def stderr_text(self) -> str:
        if self._err is not None:
            while select.select([self._err], [], [], 0)[0]:
                chunk = os.read(self._err, 65536)
                if not chunk:
                    break
                self._stderr.add(chunk)
        return self._stderr.text()

    def exit_status(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """End stdin (the agent exits on EOF), then TERM and KILL if it lingers."""
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


class LocalSession(WorkerSession):
    """This machine. ``home`` sets the agent's HOME (default: inherited)."""

    def __init__(
        self,
        spec: HostSpec,
        listener: SessionListener,
        *,
        timeouts: Timeouts | None = None,
        home: Path | None = None,
        agent_script: Path = AGENT_SCRIPT,
    ) -> None:
        super().__init__(spec, listener, timeouts or Timeouts())
        self.home = home
        self.agent_script = agent_script

    def _interrupt(self) -> None:
        # The reader notices stop within one read slice; nothing blocks longer.
        pass

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.home is not None:
            env["HOME"] = str(self.home)
        return env

    def _attempt(self) -> Outcome:
        env = self._env()
        try:
            process = subprocess.Popen(
                [agent_python(), str(self.agent_script), *self.spec.agent_argv()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            return Outcome(HostState.AGENT_FAILED, f"cannot start the local agent: {exc}")
        stream = ProcessStream(process)
        try:
            reader = AgentReader(
                self.name, self._listener, self._set_state, self.heartbeat(),
                self._stop, self._wake, self.watches,
            )
            end = reader.run(stream)
            return outcome_of(end, "the local agent", stream)
        finally:
            stream.close()

    # -- run control: this machine is always reachable, whatever the agent does ----------
    def control(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """One request to runctl.py (this interpreter, the package copy); the reply."""
        try:
            done = subprocess.run(
                [agent_python(), "-B", str(RUNCTL_SCRIPT)],
                input=json.dumps(request).encode("utf-8"),
                capture_output=True,
                env=self._env(),
                timeout=timeout,
                close_fds=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SessionUnavailable(f"{self.name}: run control timed out") from None
        return decode_reply(
            self.name, done.returncode, done.stdout, done.stderr.decode("utf-8", "replace")
        )

    def upload(self, run_id: str, files: dict[str, bytes]) -> None:
        """Write a run's snapshot into ``~/.labdeck/runs/<id>/code/`` (nothing once the run
        was launched)."""
        check_run_id(run_id)
        parts = upload_parts(files)
        home = self.home or Path(os.path.expanduser("~"))
        run = home / ".labdeck" / "runs" / run_id
        try:
            if (run / "job.json").exists():
                return
            code = run / "code"
            code.mkdir(mode=0o700, parents=True, exist_ok=True)
            run.chmod(0o700)
            for names, content in parts:
                target = code.joinpath(*names)
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                _write_private(target, content)
        except OSError as exc:
            where = f"~/.labdeck/runs/{run_id}/code"
            raise LaunchRefused(
                f"{self.name}: cannot write {where}: {exc}", host_wide=True
            ) from None


def _write_private(target: Path, content: bytes) -> None:
    """Write 0600 under a temporary name, then rename into place."""
    temp = target.with_name(f"{target.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
