"""HostSession: one SSH host, one worker thread — connect, deploy, stream, heartbeat.

Each attempt resolves the ssh config afresh, builds the transport chain (host keys
checked on every hop), makes sure the agent is on the host, starts it on one exec
channel and reads it until the connection ends; ``WorkerSession`` decides what next.
"""

from __future__ import annotations

import logging
import select
import threading
from pathlib import Path

import paramiko

from ssh_backend.agent_bundle import agent_bundle
from ssh_backend.agent_channel import AgentReader, StderrTail, StreamEnd
from ssh_backend.config import ConfigError, resolve
from ssh_backend.connect import ConnectError, Connection, Connector, Timeouts, describe_error
from ssh_backend.deploy import Deployer
from ssh_backend.events import SessionListener
from ssh_backend.hostkeys import KnownHosts, TrustDecider
from ssh_backend.hostspec import HostSpec
from ssh_backend.states import HostState
from ssh_backend.worker import Outcome, WorkerSession, outcome_of

log = logging.getLogger(__name__)


class ChannelStream:
    """An exec channel as an AgentStream; stderr is drained on every read so a chatty
    agent never stalls stdout by filling the shared window."""

    def __init__(self, channel: paramiko.Channel, write_timeout: float) -> None:
        self.channel = channel
        self.channel.settimeout(write_timeout)
        self._stderr = StderrTail()

    def _drain_stderr(self) -> None:
        while self.channel.recv_stderr_ready():
            self._stderr.add(self.channel.recv_stderr(65536))

    def read(self, timeout: float) -> bytes | None:
        self._drain_stderr()
        if not self.channel.recv_ready() and not self.channel.eof_received:
            if self.channel.closed:
                return b""
            select.select([self.channel], [], [], timeout)
            self._drain_stderr()
        if self.channel.recv_ready() or self.channel.eof_received or self.channel.closed:
            try:
                return self.channel.recv(65536)
            except TimeoutError:
                return None
        return None

    def write(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (paramiko.SSHException, EOFError) as exc:
            raise OSError(str(exc)) from None

    def stderr_text(self) -> str:
        self._drain_stderr()
        return self._stderr.text()

    def exit_status(self, timeout: float) -> int | None:
        if self.channel.status_event.wait(timeout):
            return self.channel.recv_exit_status()
        return None

    def close(self) -> None:
        self.channel.close()


class HostSession(WorkerSession):
    """A remote host over SSH. See the module docstring; states go to ``listener``."""

    def __init__(
        self,
        spec: HostSpec,
        listener: SessionListener,
        *,
        known_hosts: KnownHosts,
        trust: TrustDecider | None = None,
        ssh_config: Path | None = None,
        timeouts: Timeouts | None = None,
        key_dir: Path | None = None,
    ) -> None:
        super().__init__(spec, listener, timeouts or Timeouts())
        self.known_hosts = known_hosts
        self.trust = trust
        self.ssh_config = ssh_config
        # Where default keys (id_ed25519, …) are looked for; ~/.ssh unless given.
        self.key_dir = key_dir
        self._conn_lock = threading.Lock()
        self._conn: Connection | None = None

    def _interrupt(self) -> None:
        with self._conn_lock:
            conn = self._conn
        if conn is not None:
            conn.close()

    def _attempt(self) -> Outcome:
        try:
            plan = resolve(self.spec, self.ssh_config)
        except ConfigError as exc:
            return Outcome(HostState.OFFLINE, f"cannot use the ssh config: {exc}")
        conn = Connection()
        with self._conn_lock:
            self._conn = conn
        if self._stop.is_set():
            conn.close()
        try:
            connector = Connector(
                self.known_hosts, self.trust, self.timeouts, self._stop, self.key_dir
            )
            connector.connect(plan, conn)
            deployer = Deployer(
                conn.target, self.name, self.timeouts.command, self.timeouts.channel
            )
            home = deployer.probe()
            folder = deployer.install(home, agent_bundle())
            channel = deployer.start(folder, self.spec.agent_argv())
            conn.track(channel)
            stream = ChannelStream(channel, self.timeouts.channel)
            reader = AgentReader(
                self.name, self._listener, self._set_state, self.heartbeat(),
                self._stop, self._wake,
            )
            end = reader.run(stream)
            return self._outcome(end, stream, conn)
        except ConnectError as exc:
            return Outcome(exc.state, str(exc))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            lost = f"connection to {self.name} lost: {describe_error(exc)}"
            return Outcome(HostState.OFFLINE, lost)
        finally:
            with self._conn_lock:
                self._conn = None
            conn.close()

    def _outcome(self, end: StreamEnd, stream: ChannelStream, conn: Connection) -> Outcome:
        if end.reason == "eof" and not conn.target.is_active():
            return Outcome(HostState.OFFLINE, f"connection to {self.name} lost", end.got_hello)
        return outcome_of(end, f"the agent on {self.name}", stream)
