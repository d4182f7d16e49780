"""Build an authenticated paramiko transport chain for a ConnectPlan.

Every hop (jump hosts and target) is connected with explicit timeouts, its host key is
checked against KnownHosts *before* authentication, and failures become one of a few
exceptions whose message is a user-facing sentence and whose ``state`` is the HostState
the session should show.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import select
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from paramiko.pkey import UnknownKeyType

from ssh_backend.config import ConnectPlan, Hop
from ssh_backend.hostkeys import KnownHosts, TrustDecider, fingerprint, question
from ssh_backend.states import HostState

log = logging.getLogger(__name__)

DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every wait of a session, in seconds. Tests shorten some; the app uses these."""

    connect: float = 10.0
    banner: float = 10.0
    auth: float = 15.0
    channel: float = 10.0
    ping_interval: float = 5.0
    # Silence (no sample, no pong) after which the connection is dropped and retried.
    dead_after: float = 12.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    command: float = 30.0  # probe / hash commands and uploads


class ConnectError(Exception):
    """A connect attempt failed; ``str(exc)`` is the sentence the user sees."""

    state = HostState.OFFLINE


class Unreachable(ConnectError):
    state = HostState.OFFLINE


class AuthFailed(ConnectError):
    state = HostState.AUTH_FAILED


class HostKeyUnknown(ConnectError):
    state = HostState.HOSTKEY_UNKNOWN


class HostKeyChanged(ConnectError):
    state = HostState.HOSTKEY_CHANGED


class Connection:
    """The transports of one connection, first hop first, closable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closables: list[Any] = []
        self._closed = False
        self.transports: list[paramiko.Transport] = []

    def track(self, thing: Any) -> None:
        """Remember a socket, proxy or transport to close; closes it at once if closed."""
        with self._lock:
            if not self._closed:
                self._closables.append(thing)
                if isinstance(thing, paramiko.Transport):
                    self.transports.append(thing)
                return
        thing.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def target(self) -> paramiko.Transport:
        return self.transports[-1]

    def close(self) -> None:
        """Close everything, last hop first; safe to call twice and from another thread."""
        with self._lock:
            self._closed = True
            things, self._closables = self._closables[::-1], []
        for thing in things:
            try:
                thing.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's ProxyCommand, but ``close`` also reaps the process and its pipes
    (paramiko only sends SIGTERM, leaving a zombie and open pipes behind)."""

    def close(self) -> None:
        if self.process.returncode is None:
            try:
                super().close()
                self.process.wait(2)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _public_blobs(path: str) -> set[bytes]:
    """The public key blob from ``path.pub`` if present (readable even when the private
    key is encrypted), to match it against ssh-agent keys."""
    try:
        fields = Path(path + ".pub").read_text().split()
        return {base64.b64decode(fields[1])}
    except (OSError, IndexError, ValueError):
        return set()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def tcp_connect(host: str, port: int, timeout: float, cancel: threading.Event) -> socket.socket:
    """Connect in short slices so ``cancel`` (session stop) ends the wait promptly."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Unreachable(f"cannot reach {host}:{port}: {describe_error(exc)}") from None
    last: BaseException = TimeoutError()
    deadline = time.monotonic() + timeout
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            last = OSError(code, os.strerror(code))
            if code == errno.ECONNREFUSED:
                last = ConnectionRefusedError(code, os.strerror(code))
            continue
        while not cancel.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                last = TimeoutError()
                break
            _r, writable, _x = select.select([], [sock], [], min(left, 0.2))
            if not writable:
                continue
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            last = OSError(code, os.strerror(code))
            if code == errno.ECONNREFUSED:
                last = ConnectionRefusedError(code, os.strerror(code))
            break
        sock.close()
        if cancel.is_set():
            raise Unreachable("stopped")
    raise Unreachable(f"cannot reach {host}:{port}: {describe_error(last)}")


def _prefer_known_types(transport: paramiko.Transport, known: list[str]) -> None:
    """Offer the key types already known for the host first, as OpenSSH does, so a host
    known by its RSA key is not reported "unknown" because it also has an ed25519 key."""
    wanted: list[str] = []
    for kind in known:
        wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if kind == "ssh-rsa" else [kind]
    options = transport.get_security_options()
    current = list(options.key_types)
    first = [k for k in wanted if k in current]
    if first:
        options.key_types = tuple(first + [k for k in current if k not in first])


class Connector:
    """Connects the hops of a plan; one instance per connect attempt."""

    def __init__(
        self,
        known_hosts: KnownHosts,
        trust: TrustDecider | None,
        timeouts: Timeouts,
        cancel: threading.Event,
        key_dir: Path | None = None,
    ) -> None:
        self.known_hosts = known_hosts
        self.trust = trust
        self.timeouts = timeouts
        self.cancel = cancel
        self.key_dir = key_dir if key_dir is not None else Path.home() / ".ssh"

    def connect(self, plan: ConnectPlan, conn: Connection) -> None:
        """Fill ``conn`` with authenticated transports, the target last."""
        hops = [*plan.jumps, plan.target]
        previous: paramiko.Transport | None = None
        for number, hop in enumerate(hops):
            role = "host" if hop is plan.target else "jump host"
            sock: Any
            if previous is not None:
                sock = self._through(previous, hops[number - 1], hop)
            elif plan.proxy_command:
                try:
                    sock = _ProxyCommand(plan.proxy_command)
                except (OSError, paramiko.SSHException) as exc:
                    raise Unreachable(f"ProxyCommand for {hop.label} failed: {exc}") from None
            else:
                sock = tcp_connect(hop.hostname, hop.port, self.timeouts.connect, self.cancel)
            conn.track(sock)
            previous = self._hop(hop, role, sock, conn)

    def _through(self, via: paramiko.Transport, via_hop: Hop, hop: Hop) -> paramiko.Channel:
        """A direct-tcpip channel from the previous hop to this one (ProxyJump)."""
        try:
            return via.open_channel(
                "direct-tcpip",
                (hop.hostname, hop.port),
                ("127.0.0.1", 0),
                timeout=self.timeouts.channel,
            )
        except paramiko.ChannelException as exc:
            raise Unreachable(
                f"jump host {via_hop.label} cannot reach {hop.label}: {exc.text.lower()}"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(f"jump host {via_hop.label} lost: {describe_error(exc)}") from None

    def _hop(self, hop: Hop, role: str, sock: Any, conn: Connection) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        conn.track(transport)
        transport.banner_timeout = self.timeouts.banner
        transport.handshake_timeout = self.timeouts.banner
        transport.auth_timeout = self.timeouts.auth
        transport.channel_timeout = self.timeouts.channel
        _prefer_known_types(transport, self.known_hosts.known_types(hop.hostname, hop.port))
        try:
            transport.start_client(timeout=self.timeouts.banner + self.timeouts.connect)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if conn.closed:
                raise Unreachable("stopped") from None
            raise Unreachable(f"no SSH answer from {hop.label}: {describe_error(exc)}") from None
        if not transport.is_active() or transport.get_remote_server_key() is None:
            raise Unreachable(f"no SSH answer from {hop.label}: handshake timed out")
        self._check_host_key(hop, role, transport.get_remote_server_key())
        self._authenticate(hop, transport)
        return transport

    def _check_host_key(self, hop: Hop, role: str, key: paramiko.PKey) -> None:
        verdict = self.known_hosts.check(hop.hostname, hop.port, key)
        what = f"{key.get_name()} {fingerprint(key)}"
        if verdict == "known":
            return
        if verdict == "revoked":
            raise HostKeyChanged(
                f"the host key of {role} {hop.label} ({what}) is REVOKED in known_hosts; "
                "do not connect until the host has a new key"
            )
        if verdict == "changed":
            # Never ask here: a changed key is what an attack looks like.
            raise HostKeyChanged(
                f"the host key of {role} {hop.label} CHANGED (now {what}); if the host "
                "was reinstalled, remove its old key from known_hosts, else do not connect"
            )
        if verdict == "other_type":
            raise HostKeyChanged(self._other_type_refusal(hop, role, what))
        if self.trust is None:
            raise HostKeyUnknown(f"the host key of {role} {hop.label} is unknown ({what})")
        if not self.trust(question(hop.hostname, hop.port, key)):
            raise HostKeyUnknown(
                f"the host key of {role} {hop.label} ({what}) was not trusted"
            )
        self.known_hosts.add(hop.hostname, hop.port, key)

    def _other_type_refusal(self, hop: Hop, role: str, what: str) -> str:
        """Like a changed key (an impostor cannot show the trusted one), saying what was
        trusted and how to remove it when the host's keys were replaced on purpose."""
        before = self.known_hosts.known_types(hop.hostname, hop.port)
        forget = " and ".join(self.known_hosts.forget_commands(hop.hostname, hop.port))
        return (
            f"the host key of {role} {hop.label} is of ANOTHER TYPE: it offers {what}, "
            f"but {' and '.join(before)} {'was' if len(before) == 1 else 'were'} trusted "
            f"before; if the host's keys were replaced, remove the old entry ({forget}), "
            "else do not connect"
        )

    def _candidate_keys(
        self,
        hop: Hop,
        agent_keys: list[paramiko.PKey],
        encrypted: list[str],
        unreadable: list[str],
    ) -> list[tuple[str, paramiko.PKey]]:
        """Keys to offer, in OpenSSH's order: configured files, the agent, default files.

        With IdentitiesOnly, agent keys are offered only when they are a configured file's
        key (the usual way to use an encrypted key file), default files not at all.
        """
        explicit = list(hop.key_filenames)
        defaults = [] if hop.identities_only else [
            str(self.key_dir / n) for n in DEFAULT_KEY_NAMES
            if str(self.key_dir / n) not in explicit and (self.key_dir / n).exists()
        ]
        from_files: list[tuple[str, paramiko.PKey]] = []
        from_defaults: list[tuple[str, paramiko.PKey]] = []
        configured_blobs: set[bytes] = set()
        for path in explicit + defaults:
            is_explicit = path in explicit
            if is_explicit:
                configured_blobs |= _public_blobs(path)
            try:
                key = paramiko.PKey.from_path(path)
            except (paramiko.PasswordRequiredException, TypeError):
                # cryptography says "password was not given" with a TypeError.
                if is_explicit:
                    encrypted.append(path)
                continue
            except (OSError, ValueError, paramiko.SSHException, UnknownKeyType) as exc:
                if is_explicit:
                    unreadable.append(f"{path} ({describe_error(exc)})")
                continue
            (from_files if is_explicit else from_defaults).append((path, key))
            if is_explicit:
                configured_blobs.add(key.asbytes())
        agent = [
            (f"ssh-agent key {k.get_name()} {fingerprint(k)}", k)
            for k in agent_keys
            if not hop.identities_only or k.asbytes() in configured_blobs
        ]
        return from_files + agent + from_defaults

    def _authenticate(self, hop: Hop, transport: paramiko.Transport) -> None:
        # The agent connection must stay open until signing is done.
        agent: paramiko.Agent | None = None
        try:
            agent = paramiko.Agent()
            agent_keys: list[paramiko.PKey] = list(agent.get_keys())
        except paramiko.SSHException as exc:
            log.info("ssh-agent not usable: %s", exc)
            agent_keys = []
        try:
            self._try_keys(hop, transport, agent_keys)
        finally:
            if agent is not None:
                agent.close()

    def _try_keys(
        self, hop: Hop, transport: paramiko.Transport, agent_keys: list[paramiko.PKey]
    ) -> None:
        encrypted: list[str] = []
        unreadable: list[str] = []
        tried: list[str] = []
        for name, key in self._candidate_keys(hop, agent_keys, encrypted, unreadable):
            try:
                transport.auth_publickey(hop.user, key)
            except paramiko.BadAuthenticationType as exc:
                raise AuthFailed(
                    f"{hop.user}@{hop.label} does not accept SSH keys "
                    f"(it allows: {', '.join(exc.allowed_types) or 'nothing'})"
                ) from None
            except paramiko.AuthenticationException as exc:
                if not transport.is_active() or "timeout" in str(exc).lower():
                    raise Unreachable(f"{hop.label} stopped answering during login") from None
                tried.append(name)
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise Unreachable(f"{hop.label} dropped the login: {describe_error(exc)}") from None
            if transport.is_authenticated():
                return
            tried.append(name)
        parts = [f"{hop.user}@{hop.label} refused every key"]
        if tried:
            parts.append(f"tried {len(tried)}: " + ", ".join(tried))
        else:
            parts.append("no usable key: set a key file or load one into ssh-agent")
        for path in encrypted:
            parts.append(
                f"the key {path} is encrypted: load it into ssh-agent (ssh-add {path}), "
                "Labdeck never asks for passphrases"
            )
        if unreadable:
            parts.append("cannot read " + ", ".join(unreadable))
        raise AuthFailed("; ".join(parts))
