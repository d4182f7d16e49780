"""Lab-wide fair share: whether this Labdeck's user may take a GPU that frees up, with every
lab member's holdings and waiting demand in view (from the hosts' lab boards).

Pure functions, no I/O. The rule, work-conserving weighted max-min fairness:
- Each user's entitlement is their weighted share of the lab's GPUs, capped at what they
  hold plus what they wait for; what a capped user leaves is shared among the others
  (water-filling).
- A user at or above their entitlement does not take a free GPU while another user below
  theirs waits for a run that those free GPUs could start; nobody waits while a GPU would
  otherwise idle (if no such user waits, the GPU is taken).
Every Labdeck applies the same rule to the same boards, so they agree without a server.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ssh_backend.labboard import Board

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Waiting:
    user: str
    gpus: int  # per run
    runs: int
    since: float


@dataclass
class LabState:
    """The lab as the boards of all reachable hosts show it."""

    gpus_total: int = 0
    held: dict[str, int] = field(default_factory=dict)
    # Per host: the other users' demand published there (so only for runs that may go there).
    waiting: dict[str, list[Waiting]] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)
    # Per host: this app's user there (the SSH login), whose holdings the rule weighs.
    me: dict[str, str] = field(default_factory=dict)

    def weight(self, user: str) -> float:
        return self.shares.get(user, self.shares.get(DEFAULT, 1.0))

    def entitlements(self) -> dict[str, float]:
        caps = {u: self.held.get(u, 0) + self.wanted.get(u, 0)
                for u in set(self.held) | set(self.wanted)}
        return water_fill(self.gpus_total, caps, {u: self.weight(u) for u in caps})

    def blocker(self, host: str, free_after: int, extra: int = 0) -> Waiting | None:
        """A user below their entitlement who waits for a run that ``free_after`` free
        GPUs on ``host`` could start, while this app's user would be at or above theirs
        after taking ``extra`` more; None when this app's user may go ahead."""
        me = self.me.get(host)
        if me is None:
            return None
        entitled = self.entitlements()
        mine = self.held.get(me, 0) + extra
        if mine <= entitled.get(me, 0.0) + 1e-9:
            return None
        for wait in sorted(self.waiting.get(host, ()), key=lambda w: w.since):
            if wait.user == me or wait.gpus > free_after:
                continue
            if self.held.get(wait.user, 0) < entitled.get(wait.user, 0.0) - 1e-9:
                return wait
        return None


def water_fill(total: float, caps: Mapping[str, float], weights: Mapping[str, float]
               ) -> dict[str, float]:
    """Weighted max-min shares of ``total`` among users, none above its cap."""
    shares = {u: 0.0 for u in caps}
    active = {u for u, cap in caps.items() if cap > 0}
    left = float(total)
    while active and left > 1e-9:
        weight = sum(weights[u] for u in active)
        step = {u: left * weights[u] / weight for u in active}
        capped = {u for u in active if shares[u] + step[u] >= caps[u]}
        if not capped:
            for u in active:
                shares[u] += step[u]
            break
        for u in capped:
            left -= caps[u] - shares[u]
            shares[u] = float(caps[u])
        active -= capped
    return shares


def lab_state(
    boards: Mapping[str, Board],
    gpu_counts: Mapping[str, int],
    me: Mapping[str, str],
    in_flight: Mapping[str, int] | None = None,
) -> LabState:
    """Merge the boards of the hosts (``gpu_counts``: GPUs per host; ``me``: this app's
    login user per host; ``in_flight``: GPUs this app is launching, not leased yet)."""
    state = LabState(gpus_total=sum(gpu_counts.get(h, 0) for h in boards), me=dict(me))
    held: dict[str, int] = defaultdict(int)
    wanted: dict[str, int] = defaultdict(int)
    for host, board in boards.items():
        for lease in board.leases:
            if lease.user is not None:
                held[lease.user] += 1
        state.waiting[host] = [Waiting(d.user, d.gpus, d.runs, d.since) for d in board.demand]
        # A Labdeck publishes its demand on every host its runs may use: counted once, as
        # the most it shows on any one host.
        on_host: dict[str, int] = defaultdict(int)
        for item in board.demand:
            on_host[item.user] += item.gpus * item.runs
        for user, gpus in on_host.items():
            wanted[user] = max(wanted[user], gpus)
        if board.shares and not state.shares:
            state.shares = dict(board.shares)
    for host, count in (in_flight or {}).items():
        login = me.get(host)
        if login is not None:
            held[login] += count
    state.held = dict(held)
    state.wanted = dict(wanted)
    return state


def demand_of(waiting_runs: Iterable[tuple[int, float, int]]) -> list[dict[str, object]]:
    """This app's waiting demand to publish: ``(gpus, queued_at, priority)`` per queued
    run, grouped by GPUs per run and priority, each with the longest wait."""
    groups: dict[tuple[int, int], list[float]] = defaultdict(list)
    for gpus, since, priority in waiting_runs:
        if gpus >= 1:
            groups[(gpus, priority)].append(since)
    return [{"gpus": gpus, "runs": len(times), "since": min(times), "priority": priority}
            for (gpus, priority), times in sorted(groups.items())]


def describe_blocker(wait: Waiting, now: float | None = None) -> str:
    now = time.time() if now is None else now
    minutes = max(0, int((now - wait.since) // 60))
    return (f"over your fair share: {wait.user} has waited {minutes} min for "
            f"{wait.gpus} GPU{'s' if wait.gpus != 1 else ''}")
