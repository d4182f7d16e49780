"""``labdeck`` without a command: the window, wired to the store, the real sessions and
the dispatcher (queued runs start while the window is open).

Qt is imported here only, and only when this runs. The store is opened (and migrated)
before the event loop starts; afterwards the window's host actions write it from the
window's worker threads, never from the GUI thread.
"""

from __future__ import annotations

import logging

from app.core import hosts
from app.core.cluster import ClusterMonitor
from app.core.store import Store, StoreError
from ssh_backend.hostkeys import TrustDecider
from ssh_backend.hostspec import HostSpec

log = logging.getLogger(__name__)


class _Persisting:
    """The window's add/import actions: save the host, then start monitoring it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.monitor: ClusterMonitor | None = None

    def add_host(self, spec: HostSpec) -> None:
        hosts.validate_host_name(spec.name)
        try:
            self.store.add_host(spec)
        except StoreError as exc:
            raise ValueError(str(exc)) from None  # the window shows ValueErrors as they are
        if self.monitor is not None:
            self.monitor.add_host(spec)

    def import_hosts(self, aliases: list[str]) -> None:
        problems: list[str] = []
        for alias in aliases:
            try:
                self.add_host(HostSpec(name=alias, ssh_alias=alias))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))


def open_window(argv: list[str]) -> int:
    from app.core.dispatcher import Dispatcher
    from app.core.ingest import Ingestor
    from app.core.lab import build_monitor
    from app.ui.main import run_gui
    from app.ui.main_window import HostActions

    with Store.open() as store:
        persisting = _Persisting(store)
        dispatchers: list[Dispatcher] = []
        ingestors: list[Ingestor] = []

        def monitor_factory(trust: TrustDecider) -> ClusterMonitor:
            persisting.monitor = build_monitor(store, trust=trust)
            # The queue is dispatched while the window is open (or by `labdeck serve`,
            # whichever holds the queue lock); runs go on on their hosts after it closes.
            dispatcher = Dispatcher(store, persisting.monitor)
            dispatcher.start()
            dispatchers.append(dispatcher)
            # Runs' consoles and curves are tailed into the store while the window is open.
            ingestor = Ingestor(store, persisting.monitor)
            dispatcher.add_listener(ingestor)
            ingestor.start()
            ingestors.append(ingestor)
            return persisting.monitor

        actions = HostActions(
            add_host=persisting.add_host, import_hosts=persisting.import_hosts
        )
        log.info("opening the window with %d stored hosts", len(store.hosts()))
        try:
            return run_gui(argv, monitor_factory=monitor_factory, actions=actions)
        finally:
            for dispatcher in dispatchers:
                dispatcher.stop()
            for ingestor in ingestors:
                ingestor.stop()
