"""Composition: a ClusterMonitor over the stored hosts, with the real session factory,
and the services that run over it (dispatcher, ingestor).

The one place that decides which known_hosts files and which ssh config the sessions use,
so the GUI and the CLI connect the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.cluster import ClusterMonitor
from app.core.dispatcher import Dispatcher, DispatchOptions
from app.core.ingest import IngestOptions, Ingestor
from app.core.store import Store
from ssh_backend.events import Session, SessionListener
from ssh_backend.factory import open_session
from ssh_backend.hostkeys import KnownHosts, TrustDecider
from ssh_backend.hostspec import HostSpec

# A store setting: local hosts get HOME = <this folder>/<host name> (set by the demo lab,
# so its simulated workstations never write into the user's real ~/.labdeck).
LOCAL_HOST_HOMES_KEY = "local_host_homes"


def known_hosts() -> KnownHosts:
    """Labdeck's own trusted keys plus the user's ``~/.ssh/known_hosts`` (read only)."""
    return KnownHosts(paths.known_hosts_path(), paths.system_known_hosts())


def build_monitor(
    store: Store | None,
    *,
    trust: TrustDecider | None = None,
    ssh_config: Path | None = None,
    hosts: Iterable[HostSpec] | None = None,
) -> ClusterMonitor:
    """A monitor (not started) over ``hosts``, or over every host of ``store``.

    ``trust`` is asked about keys seen for the first time; without it such a host stops
    in ``hostkey_unknown``. ``ssh_config`` defaults to the user's ``~/.ssh/config``.
    """
    known = known_hosts()
    config = ssh_config if ssh_config is not None else paths.user_ssh_config()
    homes_root = store.get_setting(LOCAL_HOST_HOMES_KEY) if store is not None else None

    def factory(spec: HostSpec, listener: SessionListener) -> Session:
        local_home = None
        if spec.local and homes_root:
            local_home = Path(homes_root) / spec.name
            paths.ensure_private_dir(local_home)
        return open_session(spec, listener, known_hosts=known, trust=trust, ssh_config=config,
                            local_home=local_home)

    monitor = ClusterMonitor(factory)
    if hosts is None:
        hosts = store.hosts() if store is not None else []
    monitor.set_hosts(hosts)
    return monitor


@dataclass(slots=True)
class LabServices:
    """What a running Labdeck is made of: the monitor, the dispatcher and the ingestor,
    started and stopped together in the right order."""

    monitor: ClusterMonitor
    dispatcher: Dispatcher
    ingestor: Ingestor

    def start(self) -> None:
        self.ingestor.start()  # listening before the first tail chunk can arrive
        self.monitor.start()
        self.dispatcher.start()

    def stop(self, timeout: float = 5.0) -> None:
        # Nothing new is launched, then what was received is stored and the watches
        # dropped while the sessions are still up, then the sessions close.
        self.dispatcher.stop(timeout)
        self.ingestor.stop(timeout)
        self.monitor.stop(timeout)


def build_services(
    store: Store,
    monitor: ClusterMonitor | None = None,
    *,
    dispatch: DispatchOptions | None = None,
    ingest: IngestOptions | None = None,
    **monitor_args: Any,
) -> LabServices:
    """Monitor (``build_monitor(store, **monitor_args)`` unless given), dispatcher and
    ingestor over ``store``, wired together, none started. A launch or a finish the
    dispatcher sees makes the ingestor look at the runs at once."""
    monitor = monitor if monitor is not None else build_monitor(store, **monitor_args)
    dispatcher = Dispatcher(store, monitor, dispatch)
    ingestor = Ingestor(store, monitor, ingest)
    dispatcher.add_listener(ingestor)
    return LabServices(monitor, dispatcher, ingestor)
