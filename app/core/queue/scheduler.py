"""Where queued runs go: pure placement of runs on free GPUs, and why a run still waits.

No I/O and no clock: the dispatcher passes the queue, a copy of every host's view, the
reserved and in-flight GPUs, and (for starvation protection) the current time.

Order: priority (high first); among equal priority, fair share — the user with the fewest
active runs, counting placements made earlier in the same ``plan()`` call, goes first;
then FIFO (``seq``). Multi-GPU runs get all their GPUs on one host or wait.

Backfill and starvation: a run that does not fit now is skipped, so smaller runs behind it
still start. Skipping alone could starve a big run forever (small runs keep taking every
GPU that frees up), so once a run has waited ``Policy.drain_after_s`` it *drains* the
eligible host closest to fitting it: that host's free GPUs are held back from every run
after it, until enough free up there for it to start. Drained GPUs stay idle meanwhile —
the price of a guarantee; ``drain_after_s=None`` turns it off.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.hosts.cluster import HostView
from app.core.jobs.feasibility import HostFacts, impossible
from app.core.queue.fairshare import LabState, Waiting, describe_blocker, describe_quota
from app.core.queue.gpufree import GpuKey, Need, Policy, free_gpus, gpu_busy_reason, gpus_of
from app.core.queue.runs import Run, RunState
from ssh_backend.states import HostState

# Policy and free_gpus belong to the scheduler's API; they live in gpufree.
__all__ = ["Placement", "Policy", "explain", "fair_order", "free_gpus", "plan"]

@dataclass(frozen=True, slots=True)
class Placement:
    run_id: str
    host: str
    gpu_indices: tuple[int, ...]
    gpu_uuids: tuple[str, ...]


class _Host:
    """One online host during a plan: its free GPUs, shrinking as runs are placed."""

    __slots__ = ("free", "gpu_count", "mem_free", "name", "readings", "tags", "uuids", "view")

    def __init__(
        self, view: HostView, tags: Collection[str], free: list[int],
        reserved: Collection[GpuKey],
    ) -> None:
        assert view.sample is not None
        self.view = view
        self.name = view.name
        self.tags = frozenset(tags)
        self.free = free
        self.readings = {r.index: r for r in view.sample.gpus}
        static = {g.index: g.uuid for g in view.hello.gpus} if view.hello else {}
        self.uuids = {i: r.uuid or static.get(i, "") for i, r in self.readings.items()}
        # Free memory per GPU for min_free_mem_mib; unknown counts as none at all.
        self.mem_free = {
            i: r.mem_total_mib - r.mem_used_mib
            if r.mem_total_mib is not None and r.mem_used_mib is not None else -math.inf
            for i, r in self.readings.items()
        }
        # GPUs that could ever become free for a run (a reservation is the user's to lift).
        self.gpu_count = sum((self.name, i) not in reserved for i in self.readings)

    def take(self, indices: Iterable[int]) -> None:
        taken = set(indices)
        self.free = [i for i in self.free if i not in taken]


class _Pool:
    def __init__(
        self,
        views: Iterable[HostView],
        reserved: Collection[GpuKey],
        in_flight: Collection[GpuKey],
        policy: Policy,
        host_tags: Mapping[str, Collection[str]],
        lab: LabState | None = None,
    ) -> None:
        self.policy = policy
        self.lab = lab
        # GPUs placed on each host by this plan: they count as this user's from now on.
        self.placed_on: dict[str, int] = {}
        self.hosts: dict[str, _Host] = {}
        for view in sorted(views, key=lambda v: v.name):
            if view.state is HostState.ONLINE and view.sample is not None:
                free = free_gpus(view, reserved, in_flight, policy)
                room = lab.quota_room(view.name) if lab is not None else None
                host = _Host(view, host_tags.get(view.name, ()),
                             free if room is None else free[:room], reserved)
                if lab is not None and view.name in lab.quota:
                    # A run needing more than the lab's quota here can never start here.
                    host.gpu_count = min(host.gpu_count, lab.quota[view.name][0])
                self.hosts[view.name] = host
        # Host names by their number of free GPUs: an unconstrained run finds the
        # fullest (pack) or emptiest (spread) host that fits without scanning them all.
        self.buckets: dict[int, set[str]] = {}
        for host in self.hosts.values():
            self.buckets.setdefault(len(host.free), set()).add(host.name)
        self.max_free = max(self.buckets, default=0)
        self.version = 0  # bumped whenever a free list shrinks: invalidates _best_cache
        self._eligible: dict[tuple[tuple[str, ...], tuple[str, ...]], list[_Host]] = {}
        self._best_cache: dict[tuple[Any, ...], tuple[int, int]] = {}

    def eligible(self, need: Need) -> list[_Host]:
        key = (need.hosts, need.host_tags)
        hosts = self._eligible.get(key)
        if hosts is None:
            hosts = [
                h for h in self.hosts.values()
                if (not need.hosts or h.name in need.hosts)
                and h.tags.issuperset(need.host_tags)
            ]
            self._eligible[key] = hosts
        return hosts

    def available(self, host: _Host, need: Need) -> list[int]:
        if need.min_free_mem_mib is None:
            return host.free
        least = need.min_free_mem_mib
        return [i for i in host.free if host.mem_free[i] >= least]

    def most_free(self, need: Need) -> int:
        """The most GPUs available to ``need`` on one eligible host (cached per version)."""
        key = (need.hosts, need.host_tags, need.min_free_mem_mib)
        cached = self._best_cache.get(key)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        best = max((len(self.available(h, need)) for h in self.eligible(need)), default=-1)
        self._best_cache[key] = (self.version, best)
        return best

    def take(self, host: _Host, indices: Iterable[int]) -> None:
        self.buckets[len(host.free)].discard(host.name)
        host.take(indices)
        self.buckets.setdefault(len(host.free), set()).add(host.name)
        self.version += 1
        # Free lists only shrink, so the maximum only moves down.
        while self.max_free > 0 and not self.buckets.get(self.max_free):
            self.max_free -= 1

    def _bucket_host(self, gpus: int) -> _Host | None:
        counts = (range(gpus, self.max_free + 1) if self.policy.pack
                  else range(self.max_free, gpus - 1, -1))
        for count in counts:
            names = self.buckets.get(count)
            if names:
                return self.hosts[min(names)]  # ties by name, as in the general path
        return None

    def place(self, run: Run, need: Need) -> Placement | None:
        if need.problem is not None:
            return None
        if need.pin_gpus:
            host = self.hosts.get(need.hosts[0])
            if host is None or not set(need.pin_gpus) <= set(self.available(host, need)):
                return None
            chosen = tuple(sorted(need.pin_gpus))
        elif not (need.hosts or need.host_tags or need.min_free_mem_mib is not None):
            found = self._bucket_host(need.gpus)
            if found is None:
                return None
            host = found
            chosen = tuple(host.free[: need.gpus])
        else:
            if self.most_free(need) < need.gpus:
                return None
            fits = [(h, a) for h in self.eligible(need)
                    if len(a := self.available(h, need)) >= need.gpus]
            if self.policy.pack:
                host, avail = min(fits, key=lambda f: len(f[1]))
            else:
                host, avail = max(fits, key=lambda f: len(f[1]))
            chosen = tuple(avail[: need.gpus])
        if self.fair_blocker(host, len(chosen)) is not None:
            return None
        self.take(host, chosen)
        self.placed_on[host.name] = self.placed_on.get(host.name, 0) + len(chosen)
        return Placement(run.id, host.name, chosen, tuple(host.uuids[i] for i in chosen))

    def fair_blocker(self, host: _Host, gpus: int) -> Waiting | None:
        """A labmate below their fair share who waits for these GPUs (see fairshare)."""
        if self.lab is None or gpus == 0:
            return None
        extra = sum(self.placed_on.values()) + gpus
        return self.lab.blocker(host.name, len(host.free), extra)

    def drain(self, need: Need) -> bool:
        """Hold back free GPUs for a starving run that does not fit yet (see module doc);
        ``False`` if there is nothing it could ever use."""
        if need.problem is not None:
            return False
        if need.pin_gpus:
            host = self.hosts.get(need.hosts[0])
            if host is None or not set(need.pin_gpus) <= set(host.readings):
                return False
            self.take(host, need.pin_gpus)
            return True
        hosts = [h for h in self.eligible(need) if h.gpu_count >= need.gpus]
        if not hosts:
            return False
        # Closest to fitting; ties by name (dict order) for a stable choice.
        host = max(hosts, key=lambda h: len(self.available(h, need)))
        self.take(host, list(host.free))
        return True


def plan(
    queued: Iterable[Run],
    hosts: Iterable[HostView],
    reserved: Collection[GpuKey] = frozenset(),
    in_flight: Collection[GpuKey] = frozenset(),
    policy: Policy | None = None,
    *,
    host_tags: Mapping[str, Collection[str]] | None = None,
    active_per_user: Mapping[str, int] | None = None,
    now: float | None = None,
    lab: LabState | None = None,
) -> list[Placement]:
    """Placements for the queued runs that can start now, in the order to launch them.

    ``in_flight``: GPUs of runs launching or running that a sample may not show yet (the
    store's ``busy_gpus()`` plus claims in progress). ``active_per_user``: active runs per
    user, for fair share. ``now``: wall time; without it no run drains a host. ``lab``:
    the lab's boards merged (``fairshare``): GPUs are left to labmates below their share.
    """
    policy = policy or Policy()
    pool = _Pool(hosts, reserved, in_flight, policy, host_tags or {}, lab)
    active = dict(active_per_user or {})
    placements: list[Placement] = []
    drained = False
    by_priority, gpu_free_runs = _group(queued)
    for run in _fair(by_priority, active):
        if pool.max_free == 0:
            # Cheap cut-off that keeps a 10k-run queue fast: with no free GPU left, only
            # the (rare) runs that need no GPU can still start.
            done = {p.run_id for p in placements}
            for other in gpu_free_runs:
                placement = None if other.id in done else pool.place(other, Need.of(other))
                if placement is not None:
                    placements.append(placement)
            break
        if gpus_of(run.spec) > pool.max_free and (drained or not _starving(run, policy, now)):
            continue
        need = Need.of(run)
        placement = pool.place(run, need)
        if placement is not None:
            placements.append(placement)
            active[run.user] = active.get(run.user, 0) + 1
        elif not drained and _starving(run, policy, now):
            # One drain per plan, for the first starving run in queue order (the classic
            # backfill reservation): more would leave much of the lab idle at once.
            drained = pool.drain(need)
    return placements


def fair_order(queued: Iterable[Run], active: dict[str, int]) -> Iterator[Run]:
    """Yield queued runs by priority, then fewest active runs per user, then FIFO.

    The caller counts a placement by incrementing ``active[user]`` before asking for the
    next run: the user's next run then queues behind users with fewer.
    """
    return _fair(_group(queued)[0], active)


def _group(queued: Iterable[Run]) -> tuple[dict[int, list[Run]], list[Run]]:
    """Queued runs by priority, and those that need no GPU at all."""
    # The hot loop of a 10k-run plan: attribute and enum lookups are hoisted into locals.
    queued_state = RunState.QUEUED
    by_priority: dict[int, list[Run]] = {}
    groups_get = by_priority.get
    gpu_free: list[Run] = []
    for run in queued:
        if run.state is not queued_state:
            continue
        priority = run.priority
        group = groups_get(priority)
        if group is None:
            group = by_priority[priority] = []
        group.append(run)
        if run.spec.get("gpus") == 0:
            gpu_free.append(run)
    return by_priority, gpu_free


def _fair(by_priority: dict[int, list[Run]], active: dict[str, int]) -> Iterator[Run]:
    # Runs are grouped by user only when their priority is reached: a plan usually
    # stops early, so most of a long queue is never touched.
    active_get = active.get
    push, pop = heapq.heappush, heapq.heappop
    for priority in sorted(by_priority, reverse=True):
        users: dict[str, list[Run]] = {}
        users_get = users.get
        for run in by_priority[priority]:
            user = run.user
            runs = users_get(user)
            if runs is None:
                runs = users[user] = []
            runs.append(run)
        heap: list[tuple[int, int, str, int]] = []
        for user, runs in users.items():
            runs.sort(key=_SEQ)
            heap.append((active_get(user, 0), runs[0].seq, user, 0))
        heapq.heapify(heap)
        while heap:
            _, _, user, pos = pop(heap)
            runs = users[user]
            yield runs[pos]
            pos += 1
            if pos < len(runs):
                # ``active`` is read again here: the caller counts placements between yields.
                push(heap, (active_get(user, 0), runs[pos].seq, user, pos))


_SEQ = operator.attrgetter("seq")


def explain(
    run: Run,
    hosts: Iterable[HostView],
    reserved: Collection[GpuKey] = frozenset(),
    in_flight: Collection[GpuKey] = frozenset(),
    policy: Policy | None = None,
    *,
    host_tags: Mapping[str, Collection[str]] | None = None,
    lab: LabState | None = None,
    now: float | None = None,
) -> str:
    """One sentence saying why a queued run is not running (yet)."""
    policy = policy or Policy()
    need = Need.of(run)
    if need.problem is not None:
        return f"cannot start: it {need.problem}"
    views = {v.name: v for v in hosts}
    tags = host_tags or {}
    never = impossible(need.gpus, need.hosts, need.host_tags, facts_of(views, tags, lab))
    if never is not None:
        return f"cannot start as the lab stands: it {never}"
    candidates = [views[h] for h in need.hosts] if need.hosts else list(views.values())
    if need.host_tags:
        candidates = [v for v in candidates
                      if set(need.host_tags) <= set(tags.get(v.name, ()))]
    online = [v for v in candidates if v.state is HostState.ONLINE and v.sample is not None]
    if not online:
        states = ", ".join(f"{v.name}: {v.state.label}" for v in candidates)
        return f"no eligible host is online ({states})"
    if need.pin_gpus:
        view = online[0]  # exactly one host is named (else ``need.problem``)
        assert view.sample is not None
        by_index = {r.index: r for r in view.sample.gpus}
        busy = [
            f"GPU {i} {why}" for i in need.pin_gpus
            if (why := gpu_busy_reason(view, by_index.get(i), reserved, in_flight, policy,
                                       need.min_free_mem_mib))
        ]
        where = f"GPU {_ints(need.pin_gpus)} on {view.name}"
        if busy:
            return f"pinned to {where}; {'; '.join(busy)}"
        return f"pinned to {where}, which are free: it starts at the next dispatch"
    largest = max(len(v.sample.gpus) for v in online if v.sample is not None)
    if need.gpus > largest:
        return (f"needs {need.gpus} GPUs on one host; the largest eligible online host "
                f"has {largest}")
    free = {v.name: free_gpus(v, reserved, in_flight, policy, need.min_free_mem_mib)
            for v in online}
    best = max(online, key=lambda v: len(free[v.name]))
    most = len(free[best.name])
    room = lab.quota_room(best.name) if lab is not None else None
    if room is not None and room < need.gpus <= most:
        limit, mine = lab.quota[best.name] if lab is not None else (0, 0)
        return describe_quota(best.name, limit, mine)
    if most >= need.gpus:
        if lab is not None:
            waiting = lab.blocker(best.name, most, need.gpus)
            if waiting is not None:
                return describe_blocker(waiting, now)
        return (f"{most} GPUs are free on {best.name}; runs ahead of it in the queue "
                "(or one that waited long and is owed a host) take them first")
    readings = best.sample.gpus if best.sample is not None else ()
    busy = [f"GPU {r.index} {why}" for r in readings
            if (why := gpu_busy_reason(best, r, reserved, in_flight, policy,
                                       need.min_free_mem_mib))]
    return (f"needs {need.gpus} GPU{'s' if need.gpus != 1 else ''} on one host; the most "
            f"free on any online host is {most} ({best.name}: {'; '.join(busy[:3])}"
            f"{'; …' if len(busy) > 3 else ''})")


def facts_of(views: Mapping[str, HostView], tags: Mapping[str, Collection[str]],
             lab: LabState | None) -> dict[str, HostFacts]:
    """What the live views (and the lab's quotas) say of each host, for ``impossible``."""
    found = {}
    for name, view in views.items():
        gpus = (len(view.sample.gpus) if view.sample is not None
                else len(view.hello.gpus) if view.hello is not None else None)
        quota = lab.quota[name][0] if lab is not None and name in lab.quota else None
        found[name] = HostFacts(gpus, frozenset(tags.get(name, ())), quota)
    return found


def _starving(run: Run, policy: Policy, now: float | None) -> bool:
    if policy.drain_after_s is None or now is None:
        return False
    since = run.queued_at if run.queued_at is not None else run.created_at
    return now - since >= policy.drain_after_s


def _ints(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)
