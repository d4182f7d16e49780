"""Whether a run could ever start as the lab stands: one rule, used when it is submitted
(the dialog and ``labdeck submit``) and while it waits (the scheduler's reason), so an
impossible request says so at once instead of waiting for ever.

A run is impossible when no host it may use exists, or when every host it may use is
known to be too small for it: fewer GPUs than it needs on one host, or a lab policy that
caps this user below that. A host not seen yet may fit: then nothing is said.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.store import Store


@dataclass(frozen=True, slots=True)
class HostFacts:
    gpus: int | None  # None: not seen yet
    tags: frozenset[str] = frozenset()
    quota: int | None = None  # the lab policy's cap on this user's GPUs there

    @property
    def capacity(self) -> int | None:
        if self.gpus is None:
            return None
        return self.gpus if self.quota is None else min(self.gpus, self.quota)


def impossible(gpus: int, hosts: Collection[str], host_tags: Collection[str],
               facts: Mapping[str, HostFacts]) -> str | None:
    """Why a run of ``gpus`` GPUs on one host (limited to ``hosts`` / ``host_tags``)
    can never start with the hosts in ``facts`` (a phrase: "needs 8 GPUs on one host;
    …"), or None when it may."""
    names = [h for h in hosts if h in facts] if hosts else list(facts)
    if hosts and not names:
        return f"names no known host ({', '.join(hosts)}; see: labdeck hosts ls)"
    if not names:
        return "has no host to run on; add one with: labdeck hosts add NAME --ssh user@host"
    if host_tags:
        names = [h for h in names if set(host_tags) <= facts[h].tags]
        if not names:
            return f"wants the host tags {', '.join(host_tags)}, which no host has"
    if gpus == 0 or any(facts[h].gpus is None for h in names):
        return None
    best = max(names, key=lambda h: (facts[h].capacity or 0, h))
    fact = facts[best]
    if (fact.capacity or 0) >= gpus:
        return None
    where = "eligible host" if hosts or host_tags else "host"
    if fact.quota is not None and fact.quota < (fact.gpus or 0):
        return (f"needs {gpus} GPUs on one host; the lab policy allows at most "
                f"{fact.quota} per user on {best}, the roomiest {where}")
    return f"needs {gpus} GPUs on one host; the largest {where} ({best}) has {fact.gpus}"


def host_facts(store: Store, live: Mapping[str, int] | None = None) -> dict[str, HostFacts]:
    """What is known of every host: GPUs (``live`` counts first, then what the host last
    said, then a simulated host's own count), tags and this user's lab quota. Reads the
    store: call it off the GUI thread."""
    said = store.hosts_said()
    found: dict[str, HostFacts] = {}
    for spec in store.hosts():
        seen, quota, tags = said.get(spec.name, (None, None, []))
        gpus = (live or {}).get(spec.name, seen)
        if gpus is None and spec.simulated:
            gpus = spec.agent.sim_gpus
        found[spec.name] = HostFacts(gpus, frozenset(tags), quota)
    return found
