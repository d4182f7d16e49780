"""Lab-wide fair share: whether this Labdeck's user may take a GPU that frees up, with every
lab member's holdings and waiting demand in view (from the hosts' lab boards).

Pure functions, no I/O. The rule, work-conserving weighted fair share (each user's
max-min share from water-filling is what it converges to, and what the lab view shows):
- GPUs that free up go to the waiting user who would then hold the fewest GPUs per unit
  of share weight, among those with a waiting run those GPUs can start;
- so nobody waits while a GPU would otherwise idle: a user whose runs cannot use the
  free GPUs (too few on that host) does not hold them up for others.
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
    # Per host with a lab quota: (the quota, GPUs this app's user holds or is launching
    # there now). The host enforces it at lease time; planning by it avoids refusals.
    quota: dict[str, tuple[int, int]] = field(default_factory=dict)

    def quota_room(self, host: str) -> int | None:
        """How many more GPUs this app's user may take on ``host``; None: no cap."""
        if host not in self.quota:
            return None
        limit, mine = self.quota[host]
        return max(0, limit - mine)

    def weight(self, user: str) -> float:
        return self.shares.get(user, self.shares.get(DEFAULT, 1.0))

    def entitlements(self) -> dict[str, float]:
        caps = {u: self.held.get(u, 0) + self.wanted.get(u, 0)
                for u in set(self.held) | set(self.wanted)}
        return water_fill(self.gpus_total, caps, {u: self.weight(u) for u in caps})

    def blocker(self, host: str, free_after: int, extra: int = 0) -> Waiting | None:
        """The labmate a GPU that frees up on ``host`` goes to instead of this app's user,
        or None when this app's user may take it.

        ``free_after``: GPUs free on the host; ``extra``: GPUs this app's user would hold
        more by taking them (this placement and others of the same plan). Among the
        users waiting for a run that those free GPUs can start, the GPUs go to the one
        whose GPUs per share weight would be lowest after taking them (ties by name).
        Every Labdeck ranks alike from the same boards, so exactly one of them takes
        the GPUs, and no GPU idles while a waiting run fits it.
        """
        me = self.me.get(host)
        if me is None:
            return None
        mine = (self.held.get(me, 0) + extra) / self.weight(me)
        best: tuple[float, str, Waiting] | None = None
        for wait in self.waiting.get(host, ()):
            if wait.user == me or wait.gpus > free_after:
                continue
            theirs = (self.held.get(wait.user, 0) + wait.gpus) / self.weight(wait.user)
            ahead = theirs < mine - 1e-9 or (abs(theirs - mine) <= 1e-9 and wait.user < me)
            if ahead and (best is None or (theirs, wait.user) < best[:2]):
                best = (theirs, wait.user, wait)
        return best[2] if best is not None else None


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
    active: Mapping[str, int] | None = None,
) -> LabState:
    """Merge the boards of the hosts (``gpu_counts``: GPUs per host; ``me``: this app's
    login user per host; ``active``: GPUs this app's own runs hold or are launching per
    host, from its store — fresher than a board read a few seconds ago)."""
    state = LabState(gpus_total=sum(gpu_counts.get(h, 0) for h in boards), me=dict(me))
    held: dict[str, int] = defaultdict(int)
    wanted: dict[str, int] = defaultdict(int)
    for host, board in boards.items():
        login = me.get(host)
        mine = 0
        for lease in board.leases:
            if lease.user is not None and lease.user != login:
                held[lease.user] += 1
            mine += lease.user is not None and lease.user == login
        if login is not None:
            # The board may not show a run started since it was read, nor one of this
            # user's other Labdecks in the store: the larger count is the truth.
            mine = max(mine, (active or {}).get(host, 0))
            held[login] += mine
            if board.my_quota is not None:
                state.quota[host] = (board.my_quota, mine)
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


def describe_quota(host: str, limit: int, mine: int) -> str:
    return (f"quota: {mine} GPU{'s' if mine != 1 else ''} in use on {host} "
            f"(lab policy allows {limit} per user)")
