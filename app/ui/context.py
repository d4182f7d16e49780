"""What the window's features share: the store, its run and metric views, the services.

One ``AppContext`` is built by the entry point and handed to each feature's
``install_*(window, ctx)`` function (runs table, drop-to-submit, compare, notifications).
The stores are read on worker threads (``app.ui.data_worker``); writes go through the
dispatcher's thread or a worker, never the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.cluster import ClusterMonitor
from app.core.lab import LabServices
from app.core.metricstore import MetricStore
from app.core.runstore import RunStore
from app.core.store import Store
from app.ui.run_window import RunContext


@dataclass(slots=True)
class AppContext:
    store: Store
    runstore: RunStore
    metricstore: MetricStore
    services: LabServices | None = None

    @property
    def monitor(self) -> ClusterMonitor | None:
        return self.services.monitor if self.services else None

    def run_context(self) -> RunContext:
        """What a run window needs (live updates come from the ingestor)."""
        return RunContext(
            self.runstore,
            self.metricstore,
            monitor=self.monitor,
            events=self.services.ingestor if self.services else None,
        )

    def reserved_now(self) -> dict[tuple[str, int], str] | None:
        """The GPUs reserved in the lab as the dispatcher last read them (None without
        one: callers then read this store's own)."""
        return self.services.dispatcher.reserved_now() if self.services else None

    def wake_dispatcher(self) -> None:
        """After a submit, cancel, re-queue or reservation: act now, not at the next tick."""
        if self.services is not None:
            self.services.dispatcher.wake()
