"""Shared plumbing of the benchmark suite: one figure as a dict, its ratio against the
baseline, and the measuring tools several benchmarks need (CPU of a process tree, RSS,
the real OpenSSH client pointed at a lab host).

A figure is what ``tests/bench/run.py`` collects from each benchmark module's
``measure(mode)``: ``mode`` is "smoke" (tiny sizes, plumbing only), "quick" or "full".
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODES = ("smoke", "quick", "full")
FIELDS = ("name", "value", "baseline", "ratio", "target", "unit")
_TICK = os.sysconf("SC_CLK_TCK")


def ratio_of(value: float, baseline: float | None, higher_is_better: bool) -> float | None:
    """How many times better than the baseline: baseline ÷ value for times (lower is
    better), value ÷ baseline for throughputs. None without a baseline."""
    if baseline is None or value is None:
        return None
    if higher_is_better:
        return value / baseline if baseline > 0 else None
    return baseline / value if value > 0 else None


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    higher_is_better: bool = False,
    target: str = "",
    max_value: float | None = None,
    min_value: float | None = None,
    min_ratio: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One row of the table; ``met`` checks every bound given (None when none is)."""
    ratio = ratio_of(value, baseline, higher_is_better)
    checks: list[bool] = []
    if max_value is not None:
        checks.append(value < max_value)
    if min_value is not None:
        checks.append(value >= min_value)
    if min_ratio is not None:
        checks.append(ratio is not None and ratio >= min_ratio)
    return {
        "name": name,
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "unit": unit,
        "baseline_label": baseline_label,
        "higher_is_better": higher_is_better,
        "met": all(checks) if checks else None,
        "note": note,
    }


def pick(mode: str, smoke: Any, quick: Any, full: Any) -> Any:
    """The size for ``mode``."""
    return {"smoke": smoke, "quick": quick, "full": full}[mode]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank, on a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def tree_cpu_split(pids: Sequence[int]) -> tuple[float, float]:
    """CPU seconds (user + system) of ``pids`` themselves, and of every child they have
    reaped (cutime/cstime: a short-lived sshd child or nvidia-smi that exited in between
    still counts, through the parent that waited for it)."""
    own = reaped = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[11..14] = utime, stime, cutime, cstime (stat fields 14-17).
        own += int(fields[11]) + int(fields[12])
        reaped += int(fields[13]) + int(fields[14])
    return own / _TICK, reaped / _TICK


def tree_cpu_s(pids: Sequence[int]) -> float:
    """All CPU seconds of ``pids`` and the children they reaped."""
    return sum(tree_cpu_split(pids))


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of ``pid`` (this process by default) now, in MiB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def openssh_argv(host: Any, known_hosts_file: Path, remote: str) -> list[str]:
    """The real ``ssh`` client to a ``tests.harness.sshd.SshdHost``: the test key only,
    the host key pinned in ``known_hosts_file``, no user config, no agent, no prompts."""
    return [
        "ssh", "-F", "/dev/null", "-i", str(host.client_key), "-p", str(host.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts_file}",
        "-o", "LogLevel=ERROR", f"root@{host.address}", remote,
    ]


def write_openssh_known_hosts(hosts: Sequence[Any], path: Path) -> Path:
    """An OpenSSH known_hosts file pinning each host's key at its address and port."""
    lines = []
    for host in hosts:
        kind, data = host.host_key_path.with_name(host.host_key_path.name + ".pub") \
            .read_text().split()[:2]
        lines.append(f"[{host.address}]:{host.port} {kind} {data}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def run_ssh(argv: list[str], timeout: float = 30.0) -> bytes:
    """Run the ssh client; its stdout, or RuntimeError with what it said."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"ssh failed ({proc.returncode}): {proc.stderr.decode()[-400:]}")
    return proc.stdout


class StreamListener:
    """A SessionListener keeping what a benchmark needs: the state, the hello and, per
    sample, (arrival wall time, sample)."""

    def __init__(self) -> None:
        import threading

        self._cond = threading.Condition()
        self.state = ""
        self.hello: Any = None
        self.samples: list[tuple[float, Any]] = []

    def on_state(self, host: str, state: Any, detail: str) -> None:
        with self._cond:
            self.state = str(state)
            self._cond.notify_all()

    def on_hello(self, host: str, hello: Any) -> None:
        with self._cond:
            self.hello = hello
            self._cond.notify_all()

    def on_sample(self, host: str, sample: Any) -> None:
        arrived = time.time()
        with self._cond:
            self.samples.append((arrived, sample))
            self._cond.notify_all()

    def on_tail(self, host: str, chunk: Any) -> None:
        pass

    def wait_samples(self, count: int, timeout: float) -> None:
        """Until ``count`` samples in all have arrived."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.samples) >= count, timeout):
                raise RuntimeError(f"{len(self.samples)} samples of {count} in {timeout} s "
                                   f"(state {self.state})")


def open_lab_session(host: Any, root: Path, listener: StreamListener, **spec: Any) -> Any:
    """A started session (``ssh_backend.factory.open_session``) to ``host`` with its key
    trusted and no user ssh config, once its first sample arrived."""
    from ssh_backend.factory import open_session
    from ssh_backend.hostkeys import KnownHosts

    known = KnownHosts(root / f"known_hosts-{host.name}", [])
    host.trust(known)
    empty_config = root / "ssh_config"
    empty_config.touch()
    session = open_session(host.spec(**spec), listener, known_hosts=known,
                           ssh_config=empty_config)
    session.start()
    listener.wait_samples(1, timeout=60)
    return session
