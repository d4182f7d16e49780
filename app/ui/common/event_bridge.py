"""The one way core events reach Qt: the bus's events, coalesced, as signals on the GUI thread.

``EventBridge`` subscribes to a Lab's ``EventBus`` (handlers run on the publishers'
threads) and hands what arrived to the GUI thread in batches, at most one batch per
``COALESCE_MS``. Within a batch each key is delivered once, with its latest event: a
host's samples and changes, a run's changes, a run's stored points (their kinds and
series merged). So 10 Hz samples of many hosts or a chatty run never flood the GUI
thread; consumers read the details they need (the monitor, the stores) when they draw.

Each top-level window owns one, filtered to the event types it uses, and ``detach()``es
it when it closes (late events of a Lab that is stopping are dropped).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Hashable, Iterable

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from shiboken6 import isValid

from app.core.events import (
    Event,
    EventBus,
    HostChanged,
    HostRemoved,
    HostSample,
    Notification,
    PointsStored,
    RunChanged,
)

# About one frame: a burst becomes one delivery per key, and a lone event waits not at all.
COALESCE_MS = 50


class EventBridge(QObject):
    """Typed signals, each carrying its event (emitted on the GUI thread only)."""

    host_changed = Signal(object)  # HostChanged
    host_sample = Signal(object)  # HostSample
    host_removed = Signal(object)  # HostRemoved
    run_changed = Signal(object)  # RunChanged
    points_stored = Signal(object)  # PointsStored
    notification = Signal(object)  # Notification

    # Emitted on a publisher's thread once per batch, delivered queued to the GUI thread.
    _woken = Signal()

    def __init__(self, bus: EventBus | None, parent: QObject | None = None, *,
                 types: Iterable[type[Event]] = (), interval_ms: int = COALESCE_MS) -> None:
        """``bus`` None: a bridge that never delivers (a page without a Lab)."""
        super().__init__(parent)
        self._bus = bus
        self._lock = threading.Lock()
        self._pending: collections.OrderedDict[Hashable, Event] = collections.OrderedDict()
        self._waiting = False  # a wake-up is on its way to the GUI thread
        self._detached = False
        self._serial = itertools.count()
        self._interval_ms = interval_ms
        self._last_flush = -1e9
        self.deliveries = 0  # batches handed over so far (tests and benchmarks read it)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._flush)
        self._woken.connect(self._on_woken, Qt.ConnectionType.QueuedConnection)
        self._signals = {
            HostChanged: self.host_changed, HostSample: self.host_sample,
            HostRemoved: self.host_removed, RunChanged: self.run_changed,
            PointsStored: self.points_stored, Notification: self.notification,
        }
        if bus is not None:
            bus.subscribe(self._on_event, types)

    def detach(self) -> None:
        """Stop listening and drop what waits (idempotent; GUI thread)."""
        with self._lock:
            self._detached = True
            self._pending.clear()
        if self._bus is not None:
            self._bus.unsubscribe(self._on_event)
        self._timer.stop()

    # -- publishers' threads ------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        with self._lock:
            if self._detached:
                return
            self._merge(event)
            wake = not self._waiting
            self._waiting = True
        # A window deleted without detach() must not take the publisher down with it.
        if wake and isValid(self):
            self._woken.emit()

    def _merge(self, event: Event) -> None:
        """Put ``event`` last in the batch, replacing or merging the one with its key
        (lock held). Last-occurrence order keeps "removed, then added again" right."""
        pending = self._pending
        if isinstance(event, HostRemoved):
            # What was pending for the host is moot once it is gone.
            pending.pop((HostChanged, event.host), None)
            pending.pop((HostSample, event.host), None)
        key = _key(event, self._serial)
        earlier = pending.pop(key, None)
        if isinstance(event, PointsStored) and isinstance(earlier, PointsStored):
            event = PointsStored(event.run_key, earlier.kinds | event.kinds,
                                 earlier.series | event.series)
        pending[key] = event

    # -- GUI thread -------------------------------------------------------------------
    @Slot()
    def _on_woken(self) -> None:
        wait_ms = self._interval_ms - (time.monotonic() - self._last_flush) * 1000
        if wait_ms <= 0:
            self._flush()
        elif not self._timer.isActive():
            self._timer.start(int(wait_ms) + 1)

    @Slot()
    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, collections.OrderedDict()
            self._waiting = False
            if self._detached or not batch:
                return
        self._last_flush = time.monotonic()
        self.deliveries += 1
        for event in batch.values():
            signal = self._signals.get(type(event))
            if signal is not None:
                signal.emit(event)


def _key(event: Event, serial: itertools.count) -> Hashable:
    """What a later event replaces: the same kind of news about the same thing."""
    if isinstance(event, HostChanged | HostSample | HostRemoved):
        return (type(event), event.host)
    if isinstance(event, RunChanged):
        return (RunChanged, event.run_id)
    if isinstance(event, PointsStored):
        return (PointsStored, event.run_key)
    return (type(event), next(serial))  # notifications are each their own
