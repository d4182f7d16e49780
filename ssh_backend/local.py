"""LocalSession: this machine as a host, without SSH — the agent runs as a child process.

Same interface, states and heartbeat as HostSession (the reader is shared); the agent is
started from the package folder with this interpreter, nothing is uploaded.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from ssh_backend.agent_channel import AgentReader, StderrTail
from ssh_backend.connect import Timeouts
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.states import HostState
from ssh_backend.worker import Outcome, WorkerSession, outcome_of

AGENT_SCRIPT = Path(__file__).resolve().parent / "agent" / "agent.py"
TERMINATE_GRACE_S = 2.0


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

    def _attempt(self) -> Outcome:
        env = dict(os.environ)
        if self.home is not None:
            env["HOME"] = str(self.home)
        try:
            process = subprocess.Popen(
                [sys.executable, str(self.agent_script), *self.spec.agent_argv()],
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
                self._stop, self._wake,
            )
            end = reader.run(stream)
            return outcome_of(end, "the local agent", stream)
        finally:
            stream.close()
