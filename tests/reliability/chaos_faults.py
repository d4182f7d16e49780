"""The chaos run's fault injector: real faults on real processes, chosen by a seeded RNG.

Kinds: a network cut (``lo`` down in the namespace that holds every sshd and the app),
a frozen sshd (SIGSTOP on a host's sshd processes and agents, then SIGCONT), killed
agents, a killed listener (restarted in the namespace a moment later), the app SIGKILLed
and started again, and a host "reboot": every process of the host killed (sshd, agents,
run wrappers, jobs), a new boot id, sshd started again. A host's processes are found
from its sshd tree (and the connections a killed listener left behind) and from
``/proc/<pid>/environ`` (HOME is the host's own, set by sshd's SetEnv).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.netfault import NetNamespace
from tests.harness.nshost import start_in
from tests.harness.sshd import SshdHost, descendants

KINDS = ("net_cut", "sshd_freeze", "kill_agents", "kill_listener", "app_kill", "host_reboot")
Span = tuple[float, float]


@dataclass(frozen=True)
class FaultScale:
    """How long each fault lasts and the pause between faults, in seconds."""

    net_cut: Span = (1.0, 4.0)
    freeze: Span = (1.0, 4.0)
    down: Span = (0.5, 2.0)  # listener, app and rebooting host out of service
    gap: Span = (0.5, 2.0)


@dataclass(frozen=True)
class Reboot:
    host: str
    at: float  # wall time when the killing began
    old_boot_id: str
    # Wall time when every process of the host was dead. A process can still write
    # (job.json, state.json) between ``at`` and its SIGSTOP: an attempt that began
    # before ``done`` and never wrote an exit code was killed by this reboot, by ``done``.
    done: float = 0.0


@dataclass
class FaultLog:
    counts: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    reboots: list[Reboot] = field(default_factory=list)
    # Runs finished (in the store) when each fault began: did the faults land mid-queue?
    finished_at_fault: list[int] = field(default_factory=list)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _argv(pid: int) -> list[str]:
    return [os.path.basename(a) for a in _read(f"/proc/{pid}/cmdline").decode(
        errors="replace").split("\0") if a]


def _env(pid: int) -> dict[str, str]:
    pairs = (item.partition("=") for item in _read(f"/proc/{pid}/environ").decode(
        errors="replace").split("\0") if item)
    return {key: value for key, _eq, value in pairs}


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def host_boot_id(host: SshdHost) -> str:
    """The boot id the host's agents and wrappers see right now."""
    source = host.boot_id_file if host.boot_id_file.exists() else Path(
        "/proc/sys/kernel/random/boot_id")
    return source.read_text().strip()


class HostProcs:
    """The processes of one host, by role."""

    def __init__(self, host: SshdHost) -> None:
        self.host = host

    def _home_pids(self) -> list[int]:
        home = str(self.host.home)
        return [int(e) for e in os.listdir("/proc")
                if e.isdigit() and _env(int(e)).get("HOME") == home]

    def run_processes(self) -> list[int]:
        """Run wrappers and jobs (they have left sshd's tree: own session, reparented)."""
        return [pid for pid in self._home_pids()
                if "wrapper.py" in _argv(pid) or "LABDECK_RUN_DIR" in _env(pid)]

    def agents(self) -> list[int]:
        return [pid for pid in self._home_pids() if "agent.py" in _argv(pid)]

    def sshd_side(self) -> list[int]:
        """The listener, live connections (also those a killed listener left behind),
        their shells, agents and runctl calls; never a run wrapper or job."""
        pids = set(self.host.tree())
        for pid in list(self.host.known_pids):
            argv = _argv(pid)  # alive, and still an sshd (not a pid reused since)
            if argv and argv[0].startswith("sshd"):
                pids.add(pid)
                pids.update(descendants(pid))
        runs = set(self.run_processes())
        return sorted(p for p in pids if p not in runs and p != os.getpid())

    def everything(self) -> list[int]:
        return sorted(set(self.sshd_side()) | set(self._home_pids()))


class FaultInjector:
    """Injects one fault at a time until ``stop`` is set (``run`` is a thread target)."""

    def __init__(
        self,
        ns: NetNamespace,
        hosts: list[SshdHost],
        restart_app: Callable[[float], None],
        finished: Callable[[], int],
        seed: int,
        scale: FaultScale,
    ) -> None:
        self.ns = ns
        self.hosts = hosts
        self.restart_app = restart_app
        self.finished = finished
        self.rng = random.Random(seed)
        self.scale = scale
        self.log = FaultLog()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._frozen: list[int] = []
        self._deck = list(KINDS)
        self.rng.shuffle(self._deck)  # every kind once first, then at random

    def _span(self, span: Span) -> float:
        return self.rng.uniform(*span)

    def next_kind(self) -> str:
        return self._deck.pop(0) if self._deck else self.rng.choice(KINDS)

    def all_kinds_done(self) -> bool:
        return not self._deck

    def _busiest(self) -> SshdHost:
        """The host with the most run processes (ties at random): a reboot that finds
        no run to kill proves little."""
        hosts = self.rng.sample(self.hosts, len(self.hosts))
        return max(hosts, key=lambda host: len(HostProcs(host).run_processes()))

    def run(self) -> None:
        try:
            # Faults begin once runs run: before that they would only delay the start.
            while not self.stop.wait(0.2):
                if any(HostProcs(host).run_processes() for host in self.hosts):
                    break
            while not self.stop.wait(self._span(self.scale.gap)):
                kind = self.next_kind()
                host = self._busiest() if kind == "host_reboot" else self.rng.choice(self.hosts)
                self.inject(kind, host)
        except BaseException as exc:  # reported by the engine; the run is then a failure
            self.error = exc
        finally:
            self.heal()

    def inject(self, kind: str, host: SshdHost) -> None:
        self.log.finished_at_fault.append(self.finished())
        started = time.monotonic()
        detail = getattr(self, "_" + kind)(host)
        self.log.counts[kind] += 1
        self.log.events.append(f"{time.time():.3f} {kind} {host.name} {detail} "
                               f"({time.monotonic() - started:.1f} s)")

    # -- the faults -------------------------------------------------------------------
    def _net_cut(self, host: SshdHost) -> str:
        self.ns.link_down()
        try:
            time.sleep(self._span(self.scale.net_cut))
        finally:
            self.ns.link_up()
        return "all hosts"

    def _sshd_freeze(self, host: SshdHost) -> str:
        self._frozen = HostProcs(host).sshd_side()
        _signal(self._frozen, signal.SIGSTOP)
        try:
            time.sleep(self._span(self.scale.freeze))
        finally:
            self._thaw()
        return ""

    def _kill_agents(self, host: SshdHost) -> str:
        agents = HostProcs(host).agents()
        _signal(agents, signal.SIGKILL)
        return f"{len(agents)} agent(s)"

    def _kill_listener(self, host: SshdHost) -> str:
        host.kill_listener()  # records the live connections first (known_pids)
        time.sleep(self._span(self.scale.down))
        start_in(self.ns, host)
        return ""

    def _app_kill(self, host: SshdHost) -> str:
        self.restart_app(self._span(self.scale.down))
        return ""

    def _host_reboot(self, host: SshdHost) -> str:
        procs = HostProcs(host)
        old = host_boot_id(host)
        at = time.time()
        killed = 0
        for _ in range(5):  # again until nothing is left (a fork may race the first pass)
            pids = procs.everything()
            if not pids:
                break
            _signal(pids, signal.SIGSTOP)  # nothing forks or writes while the rest dies
            _signal(pids, signal.SIGKILL)
            killed += len(pids)
            time.sleep(0.05)
        if host.proc is not None:
            host.proc.wait(5)
        done = time.time()
        host.fake_reboot()
        self.log.reboots.append(Reboot(host.name, at, old, done))
        time.sleep(self._span(self.scale.down))
        start_in(self.ns, host)
        return f"{killed} process(es) killed"

    # -- back to health -----------------------------------------------------------------
    def _thaw(self) -> None:
        _signal(self._frozen, signal.SIGCONT)
        self._frozen = []

    def heal(self) -> None:
        """Network up, nothing frozen, every listener running."""
        self.ns.link_up()
        self._thaw()
        for host in self.hosts:
            if host.proc is None or host.proc.poll() is not None:
                start_in(self.ns, host)

    def kill_runs(self) -> None:
        """Teardown: no wrapper or job of any host outlives the chaos run."""
        for host in self.hosts:
            _signal(HostProcs(host).run_processes(), signal.SIGKILL)
