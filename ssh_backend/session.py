"""HostSession: one SSH host, one worker thread — connect, deploy, stream, heartbeat.

Each attempt resolves the ssh config afresh, builds the transport chain (host keys
checked on every hop), makes sure the agent is on the host, starts it on one exec
channel and reads it until the connection ends; ``WorkerSession`` decides what next.
While connected, ``control`` (run control through the bundle's runctl.py) and ``upload``
(a run's snapshot over SFTP) open their own channels on the same transport.
"""

from __future__ import annotations

import json
import logging
import posixpath
import select
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from ssh_backend.agent_bundle import agent_bundle
from ssh_backend.agent_channel import AgentReader, StderrTail, StreamEnd
from ssh_backend.config import ConfigError, resolve
from ssh_backend.connect import ConnectError, Connection, Connector, Timeouts, describe_error
from ssh_backend.deploy import Deployer, sftp_makedirs, sftp_put
from ssh_backend.events import SessionListener, SessionUnavailable
from ssh_backend.hostkeys import KnownHosts, TrustDecider
from ssh_backend.hostspec import HostSpec
from ssh_backend.runs import LaunchRefused, check_run_id, decode_reply, upload_parts
from ssh_backend.states import HostState
from ssh_backend.worker import Outcome, WorkerSession, outcome_of

log = logging.getLogger(__name__)
# States in which the SSH connection is up and run control may use it.
CONNECTED = frozenset({HostState.ONLINE, HostState.STALE, HostState.NEEDS_REBOOT})
RUNS_DIR = ".labdeck/runs"


@dataclass(frozen=True)
class _Link:
    """What run control needs of a live connection: its transport, $HOME, agent folder."""

    transport: paramiko.Transport
    home: str
    folder: str


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
        self._link: _Link | None = None

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
        log.info("%s: ssh config read by %s: %s", self.name, plan.resolved_by,
                 plan.target.label)
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
            with self._conn_lock:
                self._link = _Link(conn.target, home, folder)
            channel = deployer.start(folder, self.spec.agent_argv())
            conn.track(channel)
            stream = ChannelStream(channel, self.timeouts.channel)
            reader = AgentReader(
                self.name, self._listener, self._set_state, self.heartbeat(),
                self._stop, self._wake, self.watches,
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
                self._link = None
            conn.close()

    def _outcome(self, end: StreamEnd, stream: ChannelStream, conn: Connection) -> Outcome:
        if end.reason == "eof" and not conn.target.is_active():
            return Outcome(HostState.OFFLINE, f"connection to {self.name} lost", end.got_hello)
        return outcome_of(end, f"the agent on {self.name}", stream)

    # -- run control -------------------------------------------------------------------
    def _live_link(self) -> _Link:
        with self._conn_lock:
            link = self._link
        state = self.state
        if link is None or state not in CONNECTED or not link.transport.is_active():
            raise SessionUnavailable(f"{self.name} is not connected ({state.label})")
        return link

    def control(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """One request to runctl.py on the host, on a channel of its own; the reply."""
        link = self._live_link()
        deployer = Deployer(link.transport, self.name, timeout, self.timeouts.channel)
        data = json.dumps(request).encode("utf-8")
        try:
            code, out, err = deployer.control(link.folder, data, timeout)
        except (ConnectError, paramiko.SSHException, OSError, EOFError) as exc:
            raise SessionUnavailable(f"{self.name}: {describe_error(exc)}") from None
        return decode_reply(self.name, code, out, err.decode("utf-8", "replace"))

    def upload(self, run_id: str, files: dict[str, bytes]) -> None:
        """Write a run's snapshot into ``~/.labdeck/runs/<id>/code/`` over SFTP. Does
        nothing once the run was launched: a launched run's code never changes."""
        check_run_id(run_id)
        parts = upload_parts(files)
        link = self._live_link()
        run = posixpath.join(link.home, RUNS_DIR, run_id)
        code = posixpath.join(run, "code")
        try:
            sftp = link.transport.open_sftp_client()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SessionUnavailable(f"{self.name}: {describe_error(exc)}") from None
        if sftp is None:
            raise LaunchRefused(f"{self.name} refuses SFTP, needed to upload a run's files")
        try:
            sftp_channel = sftp.get_channel()
            if sftp_channel is not None:
                sftp_channel.settimeout(self.timeouts.command)
            self._put_files(sftp, link.home, run, code, parts)
        except (paramiko.SSHException, EOFError) as exc:
            raise SessionUnavailable(f"{self.name}: {describe_error(exc)}") from None
        except OSError as exc:
            if not link.transport.is_active():
                raise SessionUnavailable(f"{self.name}: {describe_error(exc)}") from None
            where = f"~/{RUNS_DIR}/{run_id}/code"
            raise LaunchRefused(
                f"{self.name}: cannot upload to {where}: {exc}", host_wide=True
            ) from None
        finally:
            sftp.close()

    @staticmethod
    def _put_files(
        sftp: paramiko.SFTPClient,
        home: str,
        run: str,
        code: str,
        parts: list[tuple[tuple[str, ...], bytes]],
    ) -> None:
        try:
            sftp.stat(posixpath.join(run, "job.json"))
            return  # launched already
        except FileNotFoundError:
            pass
        sftp_makedirs(sftp, home, code)
        sftp.chmod(run, 0o700)
        made = {code}
        for names, content in parts:
            folder = posixpath.join(code, *names[:-1])
            if folder not in made:
                sftp_makedirs(sftp, code, folder)
                made.add(folder)
            sftp_put(sftp, posixpath.join(folder, names[-1]), content)
