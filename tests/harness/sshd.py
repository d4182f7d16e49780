"""The lab in a box: real OpenSSH ``sshd`` processes, one per simulated workstation.

Each host listens on its own loopback address 127.0.0.x and a free port, has its own
ed25519 host key, its own HOME (``SetEnv``) and an authorized_keys file holding the test
client key; other Unix users can be let in too, each with a HOME of their own and this
host's lease namespace (``SshdHost.users``). Helpers freeze (SIGSTOP) and thaw the whole
sshd process tree, kill or restart the listener and rotate the host key, so tests can
break a host on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import paramiko

from ssh_backend.hostkeys import KnownHosts
from ssh_backend.hostspec import AgentOptions, HostSpec

SSHD = "/usr/sbin/sshd"
HARNESS_BIN = Path(__file__).resolve().parent / "bin"
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
SIM_AGENT = AgentOptions(interval_s=0.2, backend="sim", sim_gpus=4)
# Distinct loopback addresses per host; the pid spreads parallel test runs apart.
_octets = itertools.cycle(range(2 + os.getpid() % 200, 254))


def generate_key(path: Path, passphrase: str = "", kind: str = "ed25519") -> Path:
    """A fresh key pair at ``path`` / ``path.pub`` (replacing any old one)."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "labdeck-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def public_key(path: Path) -> paramiko.PKey:
    """The public key of ``path`` (a private key file with ``.pub`` beside it)."""
    kind, data = path.with_name(path.name + ".pub").read_text().split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def free_address() -> tuple[str, int]:
    """An unused 127.0.0.x address and a port free on it (bind-tested)."""
    for _ in range(50):
        address = f"127.0.0.{next(_octets)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            return address, probe.getsockname()[1]
    raise RuntimeError("no free loopback address")


def _ppids() -> dict[int, int]:
    """pid → parent pid for every process (from /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before children."""
    parents = _ppids()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@dataclass
class SshdHost:
    """One simulated workstation: an sshd, its HOME, its keys and its log."""

    name: str
    root: Path
    client_key: Path
    address: str = ""
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    listen: str | None = None
    extra_config: tuple[str, ...] = ()
    # Other Unix users let in (name → their HOME on this host): each gets this host's
    # environment (its lease namespace above all) with that HOME, and logs in with the
    # keys in ~/.ssh/authorized_keys of their real home.
    users: dict[str, Path] = field(default_factory=dict)
    # The listener's umask, inherited by every session (sftp too): a host-wide umask, as
    # pam_umask or a service's UMask= gives one. None: the test process's own.
    umask: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    # Every pid ever seen under this host, so teardown can kill orphans too.
    known_pids: set[int] = field(default_factory=set)
    frozen: list[int] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def host_key_path(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def config_path(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_key(self) -> paramiko.PKey:
        return public_key(self.host_key_path)

    @property
    def lease_ns(self) -> str:
        """This host's GPU lease namespace (LABDECK_LEASE_NS, via SetEnv): the hosts of
        the lab in a box share one kernel, and a real host's leases are its own. Abstract
        socket names are machine-wide, so the namespace derives from the host's whole
        folder: two test sessions running at once each have a "lab1-ws1" of their own."""
        where = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return f"{self.name}-{where}"

    @property
    def board_dir(self) -> Path:
        """This host's lab board folder (its own "/var/tmp", sticky, via SetEnv)."""
        return self.root / "board"

    @property
    def boot_id_file(self) -> Path:
        """Overrides the host's boot id once it exists (LABDECK_BOOT_ID_FILE)."""
        return self.root / "boot_id"

    def fake_reboot(self) -> str:
        """Give the host a new boot id, as a reboot would (processes are left alone)."""
        new_id = str(uuid.uuid4())
        self.boot_id_file.write_text(new_id + "\n")
        return new_id

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def spec(self, **overrides: object) -> HostSpec:
        """A HostSpec reaching this host as root with the client key, sim agent."""
        base = HostSpec(
            name=self.name,
            hostname=self.address,
            port=self.port,
            user="root",
            key_filename=str(self.client_key),
            agent=SIM_AGENT,
        )
        return replace(base, **overrides)

    def trust(self, known_hosts: KnownHosts) -> None:
        known_hosts.add(self.address, self.port, self.host_key)

    def session_env(self, home: Path | None = None) -> dict[str, str]:
        """The environment sshd gives a session on this host (SetEnv); ``home`` is the
        HOME of a user other than root."""
        env = {
            "HOME": str(self.home),
            "PATH": BASE_PATH,
            # Each host is its own machine: its own leases, its own boot id.
            "LABDECK_LEASE_NS": self.lease_ns,
            "LABDECK_BOARD_DIR": str(self.board_dir),
            "LABDECK_BOOT_ID_FILE": str(self.boot_id_file),
            **self.env,
        }
        return env if home is None else {**env, "HOME": str(home)}

    def _write_config(self) -> None:
        def setenv(env: dict[str, str]) -> str:
            return "SetEnv " + " ".join(f'"{k}={v}"' for k, v in env.items())

        lines = [
            f"ListenAddress {self.listen or self.address}:{self.port}",
            f"HostKey {self.host_key_path}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "PidFile none",
            "AllowTcpForwarding yes",
            "LogLevel DEBUG1",
            "Subsystem sftp internal-sftp",
            setenv(self.session_env()),
            *self.extra_config,
        ]
        # A Match block's SetEnv replaces the global one: each user gets all of it.
        for user, home in self.users.items():
            lines += [
                f"Match User {user}",
                "    AuthorizedKeysFile %h/.ssh/authorized_keys",
                f"    {setenv(self.session_env(home))}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Write the config and start sshd; returns once it answers with a banner."""
        self.spawn()
        self.wait_ready()

    def spawn(self, popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen) -> None:
        """Write the config and start sshd through ``popen`` (a network namespace's, say),
        without waiting for it. A first start makes the host key; a restart keeps it."""
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.home.mkdir(parents=True, exist_ok=True)
        self.board_dir.mkdir(exist_ok=True)
        self.board_dir.chmod(0o1777)
        if not self.host_key_path.exists():
            generate_key(self.host_key_path)
        pub = self.client_key.with_name(self.client_key.name + ".pub").read_text()
        (self.root / "authorized_keys").write_text(pub)
        self._write_config()
        umask = {} if self.umask is None else {"umask": self.umask}
        with self.log_path.open("ab") as log:
            self.proc = popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                **umask,
            )
        self.known_pids.add(self.proc.pid)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited:\n{self.log_text()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd for {self.name} did not answer:\n{self.log_text()}")
            time.sleep(0.05)

    def tree(self) -> list[int]:
        """The listener and every process below it (connections, shells, agents)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        self.known_pids.update(pids)
        return pids

    def freeze(self) -> None:
        """SIGSTOP the listener and all its children: the host hangs, TCP stays up."""
        self.frozen = self.tree()
        for pid in self.frozen:
            _signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in [*self.frozen, *self.tree()]:
            _signal(pid, signal.SIGCONT)
        self.frozen = []

    def kill_listener(self) -> None:
        """Kill only the listening sshd: new connections are refused from now on."""
        self.tree()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.kill_listener()
        self.start()

    def rotate_host_key(self) -> None:
        """A new host key (as after a reinstall), effective for new connections."""
        generate_key(self.host_key_path)
        self.restart()

    def close(self) -> None:
        """Kill sshd and everything it ever started (also after a failed test)."""
        self.thaw()
        for pid in [*self.tree(), *self.known_pids]:
            _signal(pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class SshdLab:
    """Creates sshd hosts under ``root`` with one shared client key; ``close`` kills all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = generate_key(root / "client_ed25519")
        self.hosts: list[SshdHost] = []

    def add_host(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        listen: str | None = None,
        extra_config: tuple[str, ...] = (),
        start: bool = True,
        fake_smi: bool = False,
    ) -> SshdHost:
        """A new host; ``fake_smi`` puts the fake nvidia-smi (tests/harness/bin) on PATH."""
        address, port = free_address()
        env = dict(env or {})
        if fake_smi:
            env["PATH"] = f"{HARNESS_BIN}:{env.get('PATH', BASE_PATH)}"
        root = self.root / name
        root.mkdir(parents=True, exist_ok=False)
        host = SshdHost(
            name=name,
            root=root,
            client_key=self.client_key,
            address=address,
            port=port,
            env=env,
            listen=listen,
            extra_config=extra_config,
        )
        self.hosts.append(host)
        if start:
            host.start()
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.close()


def socket_owner_pids(local: tuple[str, int], remote: tuple[str, int]) -> set[int]:
    """Pids holding the TCP connection ``local`` → ``remote`` (IPv4, from /proc/net/tcp)."""

    def encode(address: tuple[str, int]) -> str:
        packed = socket.inet_aton(address[0])[::-1].hex().upper()
        return f"{packed}:{address[1]:04X}"

    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == encode(local) and parts[2] == encode(remote):
            inodes.add(parts[9])
    owners: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    owners.add(int(entry))
        except OSError:
            continue
    return owners


@dataclass
class Lab:
    """Three simulated workstations (4 sim GPUs each) whose host keys are trusted."""

    hosts: list[SshdHost]
    known_hosts: KnownHosts
    sshd: SshdLab
