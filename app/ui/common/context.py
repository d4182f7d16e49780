"""What the window's features see of the ``Lab``: its store and run and metric views, and
the Lab itself for the live parts (monitor, dispatcher, ingestor, event bus).

The window gets ``AppContext.of(lab)``; a page that needs only the store (a screenshot,
a benchmark) is built over one without a Lab. The stores are read on worker threads
(``app.ui.common.data_worker``); writes go through the dispatcher's thread or a worker, never
the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.events import EventBus
from app.core.hosts.cluster import ClusterMonitor
from app.core.lab import Lab
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runstore import RunStore
from app.core.store import Store


@dataclass(slots=True)
class RunContext:
    """What a run window reads; ``bus``: the Lab's events (none: no live updates)."""

    runstore: RunStore
    metricstore: MetricStore
    monitor: ClusterMonitor | None = None
    bus: EventBus | None = None


@dataclass(slots=True)
class AppContext:
    store: Store
    runstore: RunStore
    metricstore: MetricStore
    services: Lab | None = None

    @classmethod
    def of(cls, lab: Lab) -> AppContext:
        return cls(lab.store, lab.runstore, lab.metricstore, lab)

    @property
    def monitor(self) -> ClusterMonitor | None:
        return self.services.monitor if self.services else None

    @property
    def bus(self) -> EventBus | None:
        """The Lab's events (windows of their own listen here through an EventBridge)."""
        return self.services.bus if self.services else None

    def run_context(self) -> RunContext:
        """What a run window needs (live updates come from the Lab's bus)."""
        return RunContext(self.runstore, self.metricstore, monitor=self.monitor, bus=self.bus)

    def reserved_now(self) -> dict[tuple[str, int], str] | None:
        """The GPUs reserved in the lab as the dispatcher last read them (None without
        one: callers then read this store's own)."""
        return self.services.dispatcher.reserved_now() if self.services else None

    def wake_dispatcher(self) -> None:
        """After a submit, cancel, re-queue or reservation: act now, not at the next tick."""
        if self.services is not None:
            self.services.dispatcher.wake()
