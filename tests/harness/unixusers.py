"""Real Unix users for the lab in a box: made by root with ``useradd``, each with an
ed25519 client key of their own, authorised in their real home, a HOME of their own on
every test host and a umask of their own there; ``close`` kills their processes and
removes them with ``userdel -r``.

A user's umask is set where a real user sets it, in the ``~/.bashrc`` of their HOME on
each host: sshd runs every command through the login shell (bash), and Debian's bash
reads ``~/.bashrc`` for a command that sshd started (SSH_SOURCE_BASHRC), so the agent,
runctl, the wrappers and the jobs all start under it. internal-sftp runs no shell: it
keeps the sshd listener's umask (``SshdHost.umask``). ``umask_of`` reads the kernel's word
for any process (``Umask:`` in /proc/PID/status).

Everything the users must reach lives under one folder made here (0755): pytest's own
temporary folders are root's alone (0700).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssh_backend.hostspec import HostSpec
from tests.harness.sshd import SshdHost, generate_key

PREFIX = "ldtest-"
SHELL = "/bin/bash"


def proc_status(pid: int | str) -> dict[str, str]:
    """/proc/PID/status as a dict ({} when the process is gone or not readable)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: value.strip() for key, _, value in
            (line.partition(":") for line in text.splitlines())}


def umask_of(pid: int | str) -> int | None:
    """A live process's umask, as the kernel keeps it."""
    value = proc_status(pid).get("Umask")
    return int(value, 8) if value else None


def uids_of(pid: int | str) -> set[int]:
    """Real, effective, saved and filesystem uid of a live process (empty when gone)."""
    value = proc_status(pid).get("Uid")
    return {int(part) for part in value.split()} if value else set()


def cmdline_of(pid: int | str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


@dataclass
class LabUser:
    """One real Unix user: uid and gid, real home, the client key (kept on the local
    side, root's) and the umask of their sessions on the hosts."""

    name: str
    uid: int
    gid: int
    home: Path
    key: Path
    umask: int

    def home_on(self, host: SshdHost) -> Path:
        """This user's HOME on ``host`` (what sshd gives their sessions there)."""
        return host.users[self.name]

    def spec(self, host: SshdHost) -> HostSpec:
        """How a Labdeck reaches ``host`` as this user: their login, their key."""
        return host.spec(user=self.name, key_filename=str(self.key))

    def pids(self) -> list[int]:
        """Every live process running with this user's uid (any of its four)."""
        return [pid for pid in all_pids() if self.uid in uids_of(pid)]

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user on this machine (the hosts' machine), with their
        umask and no supplementary groups of root's."""
        return subprocess.run(
            argv, user=self.uid, group=self.gid, extra_groups=[], umask=self.umask,
            cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)},
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, **kwargs,
        )


class UnixUsers:
    """Makes real users and lets them into sshd hosts; ``close`` undoes all of it."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("real Unix users need root (useradd)")
        self.tag = secrets.token_hex(3)
        self.root = Path(tempfile.mkdtemp(prefix=f"labdeck-users-{self.tag}-"))
        # Made here (mkdtemp makes it 0700): every test user must traverse it.
        self.root.chmod(0o755)
        self.keys = self.root / "keys"  # the local side's (root's) copy of each key
        self.keys.mkdir(mode=0o700)
        (self.root / "users").mkdir(mode=0o755)
        self.users: list[LabUser] = []

    def folder(self, name: str) -> Path:
        """A new folder under the shared root that every test user can traverse."""
        path = self.root / name
        path.mkdir()
        path.chmod(0o755)  # made here; the test process's umask may be tighter
        return path

    def add(self, umask: int) -> LabUser:
        """A new user ``ldtest-<tag>-<n>``: a system account with a home of its own, no
        password that could ever match, bash as login shell, and an ed25519 key pair
        whose public half is its ~/.ssh/authorized_keys."""
        name = f"{PREFIX}{self.tag}-{len(self.users) + 1}"
        home = self.root / "users" / name
        # '*', not useradd's locked '!': with UsePAM no, sshd refuses every login,
        # keys too, to an account whose password is locked.
        subprocess.run(
            ["useradd", "--system", "--create-home", "--home-dir", str(home),
             "--shell", SHELL, "--user-group", "--password", "*",
             "--comment", "Labdeck test user", name],
            check=True, capture_output=True, text=True, timeout=30,
        )
        entry = pwd.getpwnam(name)
        user = LabUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=home,
                       key=self.keys / f"{name}_ed25519", umask=umask)
        self.users.append(user)  # from here on, close() removes it
        generate_key(user.key)
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh / "authorized_keys"
        authorized.write_text(user.key.with_name(user.key.name + ".pub").read_text())
        authorized.chmod(0o600)
        for path in (ssh, authorized):
            os.chown(path, user.uid, user.gid)
        return user

    def admit(self, host: SshdHost, user: LabUser) -> Path:
        """Let ``user`` log into ``host`` (before it starts): a HOME of theirs on it,
        with the mode useradd gave their real home (0755 on Debian: HOME_MODE unset),
        whose ~/.bashrc sets their umask. Returns that HOME."""
        host.root.chmod(0o755)  # the lab's folder for this host, made by the test
        homes = host.root / "homes"
        if not homes.exists():
            homes.mkdir()
            homes.chmod(0o755)
        home = homes / user.name
        home.mkdir()
        home.chmod(stat.S_IMODE(user.home.stat().st_mode))
        bashrc = home / ".bashrc"
        bashrc.write_text(f"umask {user.umask:04o}\n")
        for path in (home, bashrc):
            os.chown(path, user.uid, user.gid)
        host.users[user.name] = home
        return home

    def kill_processes(self, user: LabUser, timeout: float = 10.0) -> None:
        """SIGKILL every process of ``user`` (wrappers and jobs outlive their sshd),
        until none is left: a dying parent may still fork."""
        deadline = time.monotonic() + timeout
        while True:
            pids = user.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {user.name} survive SIGKILL: {pids}")
            time.sleep(0.05)

    def close(self) -> None:
        """Kill each user's processes, remove the users (``userdel -r``) and the root."""
        problems = []
        for user in self.users:
            try:
                self.kill_processes(user)
            except RuntimeError as exc:
                problems.append(str(exc))
            done = subprocess.run(["userdel", "--remove", user.name],
                                  capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                problems.append(f"userdel {user.name}: {done.returncode} {done.stderr}")
        self.users = []
        shutil.rmtree(self.root, ignore_errors=True)
        if problems:
            raise RuntimeError("; ".join(problems))

    def __enter__(self) -> UnixUsers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

