"""The hosts of a running Lab: the store's rows and the monitored sessions, kept in line.

This process's changes (the window's Add and Import) write the store, then monitor the
host as stored. Another process's changes (``labdeck hosts add`` or ``rm`` while the
window or ``labdeck serve`` runs) reach the store only; ``HostFollower`` notices them
with a cheap check every few seconds, on its own thread, and brings the monitor in line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from app.core.hosts import registry as hosts
from app.core.hosts.cluster import ClusterMonitor
from app.core.store import Store, StoreError
from ssh_backend.hostspec import HostSpec

log = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 2.0


class LabHosts:
    """Add, import, remove and tag hosts: the store first, then the monitor.

    Failures a user can fix (a bad name, a name in use, an unknown host) raise
    ``ValueError`` with a message to show as it is. ``on_change`` is called after the
    monitored hosts or their tags changed (the dispatcher looks at the queue again).
    """

    def __init__(self, store: Store, monitor: ClusterMonitor,
                 on_change: Callable[[], None] | None = None) -> None:
        self._store = store
        self._monitor = monitor
        self._on_change = on_change or (lambda: None)
        # One change at a time: a sync must not see a host that is stored but not yet
        # monitored and start monitoring it a second time.
        self._lock = threading.Lock()

    def add(self, spec: HostSpec) -> None:
        hosts.validate_host_name(spec.name)
        with self._lock:
            try:
                self._store.add_host(spec)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
            self._monitor_stored(spec.name)
        self._on_change()

    def import_aliases(self, aliases: Iterable[str]) -> None:
        """A host per ssh config alias (named after it). Every alias is tried; one
        ``ValueError`` then lists those that could not be added."""
        problems: list[str] = []
        for alias in aliases:
            try:
                self.add(HostSpec(name=alias, ssh_alias=alias))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))

    def import_ssh_config(self, path: str | Path | None = None) -> hosts.ImportResult:
        """``hosts.import_from_ssh_config``, and the added hosts monitored. It may look
        names up in DNS: keep it off a GUI thread."""
        result = hosts.import_from_ssh_config(self._store, path)
        with self._lock:
            for name in result.added:
                self._monitor_stored(name)
        if result.added:
            self._on_change()
        return result

    def remove(self, name: str) -> None:
        with self._lock:
            try:
                self._store.remove_host(name)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
            if self._monitor.host(name) is not None:
                self._monitor.remove_host(name)
        self._on_change()

    def tags(self, name: str) -> list[str]:
        try:
            return self._store.host_tags(name)
        except StoreError as exc:
            raise ValueError(str(exc)) from None

    def set_tags(self, name: str, tags: Iterable[str]) -> None:
        try:
            self._store.set_host_tags(name, list(tags))
        except StoreError as exc:
            raise ValueError(str(exc)) from None
        self._on_change()

    def sync(self) -> tuple[list[str], list[str]]:
        """Monitor exactly the stored hosts, as stored: returns the names (added,
        removed). A host whose stored spec changed is removed and added again."""
        with self._lock:
            stored = {spec.name: spec for spec in self._store.hosts()}
            monitored = {view.name: view.spec for view in self._monitor.hosts()}
            removed = [name for name, spec in monitored.items() if stored.get(name) != spec]
            added = [spec for name, spec in stored.items() if monitored.get(name) != spec]
            for name in removed:
                self._monitor.remove_host(name)
            for spec in added:
                self._monitor.add_host(spec)
        if added or removed:
            log.info("hosts changed in the store: added %s, removed %s",
                     [s.name for s in added], removed)
            self._on_change()
        return [spec.name for spec in added], removed

    def _monitor_stored(self, name: str) -> None:
        # The spec as the store gives it back, so that a later sync finds it unchanged.
        spec = self._store.host(name)
        if spec is not None and self._monitor.host(name) is None:
            self._monitor.add_host(spec)


class HostFollower:
    """A plain thread that calls ``sync`` when another connection wrote to the store.

    ``PRAGMA data_version`` (``Store.data_version``) costs no table read; the hosts table
    is read only after someone else committed. It syncs once when started, for changes
    made between the Lab's opening and its start.
    """

    def __init__(self, store: Store, sync: Callable[[], object],
                 interval_s: float = FOLLOW_INTERVAL_S) -> None:
        self._store = store
        self._sync = sync
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="labdeck-hosts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        seen: int | None = None
        while not self._stop.is_set():
            try:
                version = self._store.data_version()
                if version != seen:
                    self._sync()
                    seen = version
            except Exception:
                # The store busy past its timeout, a bug: log it, look again next time.
                log.exception("could not follow what another process wrote to the store")
            self._stop.wait(self._interval_s)
