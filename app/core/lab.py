"""The composition root: one ``Lab`` owns the store, the event bus, the monitor, the
dispatcher, the ingestor and the hosts, and starts and stops them in one order.

The window, ``labdeck serve`` and every CLI command that connects to hosts get their
Lab from ``Lab.open``, the one place that decides which known_hosts files, which ssh
config and which homes for local hosts the sessions use, so they all connect the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from types import TracebackType

from app.core import paths
from app.core.events import EventBus, RunChanged
from app.core.hosts.cluster import ClusterMonitor, SessionFactory
from app.core.hosts.lab_hosts import HostFollower, LabHosts
from app.core.metrics.ingest import IngestOptions, Ingestor
from app.core.metrics.metricstore import MetricStore
from app.core.queue.dispatcher import Dispatcher, DispatchOptions
from app.core.queue.runstore import RunStore
from app.core.runs_catalog import RunsCatalog
from app.core.store import Store
from ssh_backend.events import Session, SessionListener
from ssh_backend.hostkeys import KnownHosts, TrustDecider
from ssh_backend.hostspec import HostSpec

# A store setting: local hosts get HOME = <this folder>/<host name> (set by the demo lab,
# so its simulated workstations never write into the user's real ~/.labdeck).
LOCAL_HOST_HOMES_KEY = "local_host_homes"


def known_hosts() -> KnownHosts:
    """Labdeck's own trusted keys plus the user's ``~/.ssh/known_hosts`` (read only)."""
    return KnownHosts(paths.known_hosts_path(), paths.system_known_hosts())


def session_factory(trust: TrustDecider | None = None, ssh_config: Path | None = None,
                    local_homes: Path | None = None) -> SessionFactory:
    """Real sessions: SSH checked against ``known_hosts()``, or local ones (with HOME =
    ``local_homes/<name>`` when given). ``trust`` is asked about keys seen for the first
    time; without it such a host stops in ``hostkey_unknown``."""
    # paramiko loads only here, when sessions are wanted (not for `labdeck ls`).
    from ssh_backend.factory import open_session

    known = known_hosts()
    config = ssh_config if ssh_config is not None else paths.user_ssh_config()

    def factory(spec: HostSpec, listener: SessionListener) -> Session:
        local_home = None
        if spec.local and local_homes is not None:
            local_home = local_homes / spec.name
            paths.ensure_private_dir(local_home)
        return open_session(spec, listener, known_hosts=known, trust=trust, ssh_config=config,
                            local_home=local_home)

    return factory


class Lab:
    """A running Labdeck. ``start()`` and ``stop()`` (or ``with``); ``hosts`` changes
    hosts for the store and the monitor together.

    Build one with ``Lab.open``; the constructor wires given parts (tests pass a monitor
    over simulated sessions). ``bus``: the monitor's, where the monitor, the dispatcher
    and the ingestor publish and where the window's bridge listens. ``follow_store``:
    hosts that another process adds to or removes from the store are added to or removed
    from the monitor while running, and runs another process changes (``labdeck serve``
    holding the queue, a ``labdeck cancel``) are told on the bus like this Lab's own.
    """

    def __init__(self, store: Store, monitor: ClusterMonitor, *,
                 dispatch: DispatchOptions | None = None, ingest: IngestOptions | None = None,
                 ingest_only: Collection[str] | None = None, follow_store: bool = False,
                 owns_store: bool = False) -> None:
        self.store = store
        self.monitor = monitor
        self.bus = monitor.bus
        self.runstore = RunStore(store)
        self.metricstore = MetricStore(store)
        self.dispatcher = Dispatcher(store, monitor, dispatch)
        only = set(ingest_only) if ingest_only is not None else None
        # A launch or a finish the dispatcher publishes makes the ingestor look at once.
        self.ingestor = Ingestor(store, monitor, ingest, only=only)
        self.hosts = LabHosts(store, monitor, on_change=lambda: self.dispatcher.wake())
        self._runs_seen_at = time.time()
        self._follower = HostFollower(store, self._follow) if follow_store else None
        self._owns_store = owns_store
        # start() may run on a thread of its own (the window's) while stop() is called.
        self._life = threading.Lock()
        self._started = self._stopped = False

    @classmethod
    def open(cls, store: Store | None = None, *, trust: TrustDecider | None = None,
             ssh_config: Path | None = None, hosts: Iterable[HostSpec] | None = None,
             local_homes: Path | None = None, dispatch: DispatchOptions | None = None,
             ingest: IngestOptions | None = None,
             ingest_only: Collection[str] | None = None) -> Lab:
        """A Lab (not started) over ``store`` (default: this user's, opened here and
        closed by ``close()``) and real sessions.

        ``hosts``: only these, and the store's host list is not followed (commands about
        some hosts); default every stored host, followed. ``local_homes`` defaults to
        the store's ``LOCAL_HOST_HOMES_KEY`` setting. ``ssh_config`` defaults to
        ``~/.ssh/config``; ``trust`` as in ``session_factory``.
        """
        owns = store is None
        store = store if store is not None else Store.open()
        try:
            if local_homes is None:
                homes = store.get_setting(LOCAL_HOST_HOMES_KEY)
                local_homes = Path(homes) if homes else None
            monitor = ClusterMonitor(session_factory(trust, ssh_config, local_homes),
                                     bus=EventBus())
            monitor.set_hosts(store.hosts() if hosts is None else hosts)
            return cls(store, monitor, dispatch=dispatch, ingest=ingest,
                       ingest_only=ingest_only, follow_store=hosts is None, owns_store=owns)
        except BaseException:
            if owns:
                store.close()
            raise

    def _follow(self) -> None:
        """Another connection wrote to the store: its hosts, and its runs' changes."""
        self.hosts.sync()
        since, self._runs_seen_at = self._runs_seen_at, time.time()
        for run_id in RunsCatalog(self.store, self.metricstore).changed_since(since):
            self.bus.publish(RunChanged(run_id))

    # -- lifecycle -----------------------------------------------------------------
    def start(self, *, dispatch: bool = True, ingest: bool = True) -> None:
        """The ingestor (listening before the first tail chunk can arrive), the
        sessions, the dispatcher, then the follower of the store's hosts.

        ``dispatch=False``: no run is launched or followed (commands that only read the
        hosts); ``ingest=False``: no console or curve is stored. Nothing happens once
        ``stop()`` was called (a window closed before its Lab got going).
        """
        with self._life:
            if self._started or self._stopped:
                return
            self._started = True
            if ingest:
                self.ingestor.start()
            self.monitor.start()
            if dispatch:
                self.dispatcher.start()
            if self._follower is not None:
                self._follower.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Nothing new is launched (the dispatcher), then what was received is stored and
        the watches dropped while the sessions are still up (the ingestor), then the
        sessions close (the monitor). Runs go on on their hosts. Safe to repeat."""
        with self._life:
            self._stopped = True
            if not self._started:
                return
            self._started = False
            if self._follower is not None:
                self._follower.stop(timeout)  # no host is added while the sessions close
            self.dispatcher.stop(timeout)
            self.ingestor.stop(timeout)
            self.monitor.stop(timeout)

    def close(self) -> None:
        """``stop()``, then close the store if ``Lab.open`` opened it."""
        self.stop()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

