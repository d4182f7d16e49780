"""The one event bus of a Lab: the core publishes typed events, anyone subscribes.

Publishers are the monitor (hosts), the dispatcher (runs) and the ingestor (stored data).
Handlers run on the publisher's thread (a session's, the dispatcher's, the ingest
writer's), in the order they subscribed, so they must return quickly: set a flag, queue
something, wake a thread. The UI's ``app.ui.common.event_bridge`` is one such handler: it
carries events over to the GUI thread.

Events say what changed, with the data at hand when it changed; a consumer that needs
the latest picture reads it from its owner (``ClusterMonitor.host``, the stores).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the monitor and the notifications import this module
    from app.core.hosts.cluster import HostView
    from app.core.notify_events import NotifyEvent
    from ssh_backend.protocol import Sample

log = logging.getLogger(__name__)

# What ``PointsStored.kinds`` holds: the run's console grew; it got points or parameters.
LOG = "log"
METRICS = "metrics"


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event on the bus."""


@dataclass(frozen=True, slots=True)
class HostChanged(Event):
    """Host ``host`` was added, or its state, detail, hello or note changed."""

    host: str
    view: HostView


@dataclass(frozen=True, slots=True)
class HostSample(Event):
    """A sample of ``host`` arrived (as kept, after the host's bounds were applied)."""

    host: str
    sample: Sample
    received_at: float  # this machine's wall clock


@dataclass(frozen=True, slots=True)
class HostRemoved(Event):
    """Host ``host`` is no longer monitored."""

    host: str


@dataclass(frozen=True, slots=True)
class RunChanged(Event):
    """Run ``run_id`` (the store's id) changed: claimed, launched, ended, requeued,
    or got a new waiting reason."""

    run_id: str


@dataclass(frozen=True, slots=True)
class PointsStored(Event):
    """New data of run ``run_key`` (its id on the host, the metric store's) was committed.

    ``kinds``: among ``LOG`` and ``METRICS``; ``series``: the metric series that got
    points in that commit (empty when only the console or the parameters changed).
    """

    run_key: str
    kinds: frozenset[str]
    series: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Notification(Event):
    """Something worth telling the user (a finished run, a watched condition)."""

    event: NotifyEvent


Handler = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class _Subscription:
    handler: Handler
    types: tuple[type[Event], ...]  # empty: every event

    def wants(self, event: Event) -> bool:
        return not self.types or isinstance(event, self.types)


class EventBus:
    """Typed publish/subscribe, safe from any thread.

    ``publish`` calls each matching handler on the calling thread, in subscription
    order, so one publisher's events reach each handler in the order it published
    them. A handler that raises is logged; the others still get the event.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Replaced, never changed in place: publish iterates without holding the lock,
        # so a handler may subscribe or unsubscribe (even itself) while it runs.
        self._subscriptions: tuple[_Subscription, ...] = ()

    def subscribe(self, handler: Handler, types: Iterable[type[Event]] = ()) -> None:
        """Call ``handler(event)`` for every event of ``types`` (default: all). A handler
        subscribed again keeps its place and takes the new ``types``."""
        subscription = _Subscription(handler, tuple(types))
        with self._lock:
            known = [s for s in self._subscriptions if s.handler == handler]
            if known:
                self._subscriptions = tuple(
                    subscription if s.handler == handler else s for s in self._subscriptions)
            else:
                self._subscriptions = (*self._subscriptions, subscription)

    def unsubscribe(self, handler: Handler) -> None:
        """Stop calling ``handler`` (no error if it was not subscribed). A publish already
        under way on another thread may still call it once."""
        with self._lock:
            self._subscriptions = tuple(
                s for s in self._subscriptions if s.handler != handler)

    def publish(self, event: Event) -> None:
        for subscription in self._subscriptions:
            if not subscription.wants(event):
                continue
            try:
                subscription.handler(event)
            except Exception:
                # One broken consumer must not cost the others the event.
                log.exception("%r failed on %s", subscription.handler, type(event).__name__)

    def subscribers(self) -> int:
        """How many handlers are subscribed (tests check that windows let go)."""
        return len(self._subscriptions)
