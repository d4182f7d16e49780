"""Put the agent on a host and start it: probe $HOME and python3, upload, exec.

The upload goes over SFTP only for files that are missing or whose sha256 (computed on
the host) differs from the bundle, so an unchanged host costs one small command and a
tampered copy is replaced. Files are written to a temporary name, checked for their full
size and renamed into place. An upload that fails on a disk too full for it says so: SFTP
itself reports a full disk only as "Failure".
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import secrets
import select
import shlex
import time

import paramiko

from ssh_backend.agent_bundle import REMOTE_ROOT, AgentBundle, remote_dir
from ssh_backend.agent_channel import StderrTail
from ssh_backend.connect import ConnectError, Unreachable
from ssh_backend.states import HostState

MIN_PYTHON = (3, 8)
# Where everything of Labdeck lives on a host, relative to $HOME.
_LABDECK_DIR = posixpath.dirname(REMOTE_ROOT)
# Tagged lines, so a chatty login shell (a banner from .bashrc) cannot be mistaken for them.
_PROBE = (
    'printf "labdeck-home=%s\\n" "$HOME"; command -v python3 >/dev/null 2>&1 && '
    "python3 -c 'import sys; print(\"labdeck-python=%d.%d\" % sys.version_info[:2])'"
)
# Runs on the host: sha256 of each named file in a folder, null for a missing one.
_HASHER = (
    "import hashlib,json,os,sys\n"
    "d=sys.argv[1]\n"
    "def h(n):\n"
    "    try:\n"
    "        with open(os.path.join(d,n),'rb') as f: return hashlib.sha256(f.read()).hexdigest()\n"
    "    except OSError: return None\n"
    "print(json.dumps({n: h(n) for n in sys.argv[2:]}))\n"
)
# Runs on the host: bytes free to this user on the disk that holds (or will hold) a path.
_FREE_SPACE = (
    "import os,sys\n"
    "p=sys.argv[1]\n"
    "while not os.path.isdir(p) and os.path.dirname(p)!=p: p=os.path.dirname(p)\n"
    "s=os.statvfs(p)\n"
    "print('labdeck-free=%d' % (s.f_bavail*s.f_frsize))\n"
)
MAX_OUTPUT = 1 << 20
MIB = 1 << 20
# Each file takes at least one block of its own, whatever its length.
_BLOCK = 4096


class AgentFailed(ConnectError):
    state = HostState.AGENT_FAILED


def run_command(
    transport: paramiko.Transport,
    command: str,
    timeout: float,
    channel_timeout: float,
    stdin: bytes = b"",
) -> tuple[int, bytes, bytes]:
    """Run one command, ``stdin`` sent then closed; both streams are drained before the
    exit status is read (reading the status first can wait forever on a full window)."""
    channel = transport.open_session(timeout=channel_timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = bytearray(), StderrTail(MAX_OUTPUT)
        deadline = time.monotonic() + timeout
        while True:
            if channel.recv_stderr_ready():
                err.add(channel.recv_stderr(65536))
            if channel.recv_ready():
                out += channel.recv(65536)
                if len(out) > MAX_OUTPUT:
                    raise Unreachable(f"command output over {MAX_OUTPUT} bytes")
                continue
            if channel.eof_received and not channel.recv_stderr_ready():
                break
            left = deadline - time.monotonic()
            if left <= 0 or not transport.is_active():
                raise Unreachable("the host stopped answering a command")
            select.select([channel], [], [], min(left, 0.2))
        if not channel.status_event.wait(min(5.0, timeout)):
            raise Unreachable("the host did not report a command's exit status")
        return channel.recv_exit_status(), bytes(out), err.text().encode()
    finally:
        channel.close()


def sftp_makedirs(sftp: paramiko.SFTPClient, base: str, folder: str) -> None:
    """Create ``folder`` and its parents below ``base`` (which exists), each 0700."""
    path = base
    for part in posixpath.relpath(folder, base).split("/"):
        path = posixpath.join(path, part)
        try:
            sftp.stat(path)
        except FileNotFoundError:
            sftp.mkdir(path, 0o700)


def sftp_put(sftp: paramiko.SFTPClient, target: str, content: bytes) -> None:
    """Write a file 0600 under a temporary name, then rename it into place: a reader
    never sees half a file. A failed or short write raises OSError and leaves nothing."""
    temp = f"{target}.tmp-{secrets.token_hex(4)}"
    try:
        with sftp.open(temp, "wb") as handle:
            handle.chmod(0o600)
            handle.set_pipelined(True)
            handle.write(content)
        # paramiko files the replies to pipelined writes under no file object
        # (SFTPFile._write: _async_request(type(None), ...)), so a refused write (a full
        # disk) raises nothing; the size left is the only trace, as putfo(confirm=True)
        # checks too.
        written = sftp.stat(temp).st_size
        if written != len(content):
            name = posixpath.basename(target)
            raise OSError(f"only {written} of {len(content)} bytes of {name} were written")
    except OSError:
        _remove_quietly(sftp, temp)
        raise
    sftp.posix_rename(temp, target)


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    """Best effort: the error that led here is the one worth reporting."""
    try:
        sftp.remove(path)
    except (OSError, paramiko.SSHException, EOFError):
        pass


class Deployer:
    """Probes, uploads and starts the agent on one connected host."""

    def __init__(
        self, transport: paramiko.Transport, host: str, timeout: float, channel_timeout: float
    ) -> None:
        self.transport = transport
        self.host = host
        self.timeout = timeout
        self.channel_timeout = channel_timeout

    def _run(self, command: str) -> tuple[int, bytes, bytes]:
        # Through /bin/sh (by path: PATH may be odd): the login shell may be csh or fish.
        wrapped = f"/bin/sh -c {shlex.quote(command)}"
        return run_command(self.transport, wrapped, self.timeout, self.channel_timeout)

    def probe(self) -> str:
        """$HOME on the host; raises AgentFailed when python3 is missing or too old."""
        _code, out, _err = self._run(_PROBE)
        found = dict(
            line.split("=", 1)
            for line in out.decode("utf-8", errors="replace").splitlines()
            if line.startswith(("labdeck-home=", "labdeck-python="))
        )
        home = found.get("labdeck-home", "")
        if not home.startswith("/"):
            raise AgentFailed(f"cannot find the home folder on {self.host} (HOME={home!r})")
        python = found.get("labdeck-python")
        if python is None:
            raise AgentFailed(f"python3 not found on {self.host}; install python3 (3.8+)")
        try:
            version = tuple(int(p) for p in python.split("."))
        except ValueError:
            raise AgentFailed(f"python3 on {self.host} does not run properly") from None
        if version < MIN_PYTHON:
            raise AgentFailed(
                f"python3 on {self.host} is {python}; Labdeck needs python3 3.8 or newer"
            )
        return home

    def stale_files(self, folder: str, bundle: AgentBundle) -> list[str]:
        """Bundle files missing on the host or different from ours."""
        command = shlex.join(["python3", "-c", _HASHER, folder, *sorted(bundle.files)])
        code, out, err = self._run(command)
        try:
            remote = json.loads(out)
        except ValueError:
            remote = None
        if code != 0 or not isinstance(remote, dict):
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise AgentFailed(f"cannot check the agent files on {self.host}: {tail[0]}")
        return sorted(
            name
            for name, content in bundle.files.items()
            if remote.get(name) != hashlib.sha256(content).hexdigest()
        )

    def install(self, home: str, bundle: AgentBundle) -> str:
        """Make ``$HOME/<remote_dir>`` hold exactly the bundle; return that folder."""
        folder = posixpath.join(home, remote_dir(bundle.version))
        names = self.stale_files(folder, bundle)
        if not names:
            return folder
        files = {name: bundle.files[name] for name in names}
        try:
            self._upload(home, folder, files)
        except OSError as exc:
            reason = f"cannot upload the agent to {self.host}: {exc}"
            raise self._upload_failed(home, files, reason) from None
        if self.stale_files(folder, bundle):
            reason = f"the agent files on {self.host} differ after upload"
            raise self._upload_failed(home, files, reason)
        return folder

    def _upload(self, home: str, folder: str, files: dict[str, bytes]) -> None:
        sftp = self.transport.open_sftp_client()
        if sftp is None:
            raise AgentFailed(f"{self.host} refuses SFTP, needed to upload the agent")
        try:
            sftp_channel = sftp.get_channel()
            if sftp_channel is not None:
                sftp_channel.settimeout(self.timeout)
            sftp_makedirs(sftp, home, folder)
            sftp.chmod(folder, 0o700)
            for name, content in files.items():
                sftp_put(sftp, posixpath.join(folder, name), content)
        finally:
            sftp.close()

    def _upload_failed(self, home: str, files: dict[str, bytes], reason: str) -> AgentFailed:
        """The error for a failed upload: "no space left" when the disk holding ~/.labdeck
        has less room than the upload needed (SFTP names no cause, only "Failure"), else
        one saying ``reason``."""
        needed = sum(len(content) + _BLOCK for content in files.values())
        free = self.free_bytes(posixpath.join(home, _LABDECK_DIR))
        if free is None or free >= needed:
            return AgentFailed(reason)
        return AgentFailed(
            f"no space left on {self.host} (~/{_LABDECK_DIR}): {free / MIB:.1f} MiB free; "
            "free some space there"
        )

    def free_bytes(self, path: str) -> int | None:
        """Bytes free to this user on the disk that holds (or would hold) ``path`` on the
        host; None when it cannot tell. ``path`` is one quoted argument, never code."""
        try:
            code, out, _err = self._run(shlex.join(["python3", "-c", _FREE_SPACE, path]))
        except (ConnectError, paramiko.SSHException, OSError, EOFError):
            return None  # the failure being explained is the one to report
        if code != 0:
            return None
        for line in out.decode("utf-8", errors="replace").splitlines():
            if line.startswith("labdeck-free="):
                value = line.partition("=")[2]
                return int(value) if value.isdigit() else None
        return None

    def control(self, folder: str, request: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        """Run the bundle's runctl.py with one request on stdin (never on the command
        line); (exit code, stdout, stderr)."""
        script = posixpath.join(folder, "runctl.py")
        command = f"/bin/sh -c {shlex.quote(shlex.join(['exec', 'python3', '-B', script]))}"
        return run_command(self.transport, command, timeout, self.channel_timeout, request)

    def start(self, folder: str, argv: list[str]) -> paramiko.Channel:
        """Exec the agent on its own channel, no pty; the caller reads its output."""
        channel = self.transport.open_session(timeout=self.channel_timeout)
        # -B: no __pycache__ beside the verified files, so the folder holds exactly the
        # bundle and a stale or altered .pyc can never run instead of the checked source.
        script = posixpath.join(folder, "agent.py")
        command = shlex.join(["exec", "python3", "-B", script, *argv])
        channel.exec_command(command)
        return channel
