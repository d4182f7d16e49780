"""Which GPUs a new run may take: what a run needs, and when a GPU counts as free.

Free means: its host is ONLINE with a reading for it, no process of anyone runs on it,
its used memory is under the policy threshold (and it has the run's minimum free memory),
no lease holds it, nobody in the lab reserved it and no launch is in flight on it.
Pure functions over the protocol's readings; the scheduler builds on them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.hosts.cluster import HostView
from app.core.queue.runs import Run
from ssh_backend.protocol import GpuReading
from ssh_backend.states import HostState

GpuKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Policy:
    # A GPU using this much memory or more is busy even without a visible process (the
    # process may belong to another container or be hidden from this user).
    mem_threshold_mib: float = 1024.0
    # True: fill the busiest host that fits (keeps whole machines free for big runs).
    pack: bool = True
    drain_after_s: float | None = 3600.0


@dataclass(frozen=True, slots=True)
class Need:
    """What a run asks of a host, read from its spec (tolerant of missing keys)."""

    gpus: int
    hosts: tuple[str, ...]
    host_tags: tuple[str, ...]
    pin_gpus: tuple[int, ...]
    min_free_mem_mib: float | None

    @classmethod
    def of(cls, run: Run) -> Need:
        spec = run.spec
        min_free = spec.get("min_free_mem_mib")
        return cls(
            gpus=gpus_of(spec),
            hosts=tuple(str(h) for h in spec.get("hosts") or ()),
            host_tags=tuple(str(t) for t in spec.get("host_tags") or ()),
            pin_gpus=tuple(int(i) for i in spec.get("pin_gpus") or ()),
            min_free_mem_mib=float(min_free) if min_free is not None else None,
        )

    @property
    def problem(self) -> str | None:
        """Why this need can never be met, whatever the cluster looks like."""
        if self.gpus < 0:
            return f"asks for {self.gpus} GPUs"
        if self.pin_gpus and len(self.hosts) != 1:
            return "pins GPUs but does not name exactly one host"
        if self.pin_gpus and len(set(self.pin_gpus)) != self.gpus:
            return f"pins GPUs {_ints(self.pin_gpus)} but asks for {self.gpus} GPUs"
        return None


def gpu_busy_reason(
    view: HostView,
    reading: GpuReading | None,
    reserved: Collection[GpuKey],
    in_flight: Collection[GpuKey],
    policy: Policy,
    min_free_mem_mib: float | None = None,
) -> str | None:
    """``None`` if the GPU is free for a new run, else a short phrase saying why not."""
    if reading is None:
        return "no reading"
    key = (view.name, reading.index)
    if key in reserved:
        # A lab reservation says by whom and until when; an old local one only that it is.
        said = reserved.get(key) if isinstance(reserved, Mapping) else None
        return said or "reserved for manual use"
    if key in in_flight:
        return "a launch is in flight on it"
    if reading.processes:
        p = reading.processes[0]
        return f"used by {p.user or 'another user'} (pid {p.pid})"
    if reading.leased_by is not None:
        return f"leased by run {reading.leased_by}"
    used = reading.mem_used_mib
    if used is None:
        return "memory use unknown"
    if used >= policy.mem_threshold_mib:
        return f"{used:.0f} MiB in use (threshold {policy.mem_threshold_mib:.0f} MiB)"
    if min_free_mem_mib is not None:
        total = reading.mem_total_mib
        if total is None or total - used < min_free_mem_mib:
            free = "unknown" if total is None else f"{total - used:.0f} MiB"
            return f"{free} free, needs {min_free_mem_mib:.0f} MiB"
    return None


def free_gpus(
    view: HostView,
    reserved: Collection[GpuKey] = frozenset(),
    in_flight: Collection[GpuKey] = frozenset(),
    policy: Policy | None = None,
    min_free_mem_mib: float | None = None,
) -> list[int]:
    """Indices of the GPUs of an ONLINE host on which a new run may start, ascending."""
    policy = policy or Policy()
    if view.state is not HostState.ONLINE or view.sample is None:
        return []
    return sorted(
        r.index for r in view.sample.gpus
        if gpu_busy_reason(view, r, reserved, in_flight, policy, min_free_mem_mib) is None
    )


def gpus_of(spec: Mapping[str, Any]) -> int:
    gpus = spec.get("gpus")
    return int(gpus) if gpus is not None else (len(spec.get("pin_gpus") or ()) or 1)


def _ints(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)
