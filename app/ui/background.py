"""Run a plain function on a worker thread and get its result back on the GUI thread.

Used for the injected actions (store writes, reconnects) so that the GUI thread never
waits on SQLite, the network or a lock held by a session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from shiboken6 import isValid


class _Relay(QObject):
    """Lives on the GUI thread; its slots run there when the worker emits."""

    returned = Signal(object)
    errored = Signal(object)

    def __init__(self, on_result: Callable[[Any], None] | None,
                 on_error: Callable[[BaseException], None] | None,
                 owner: QObject | None) -> None:
        super().__init__()
        self._on_result = on_result
        self._on_error = on_error
        self._owner = owner
        queued = Qt.ConnectionType.QueuedConnection
        self.returned.connect(self._deliver_result, queued)
        self.errored.connect(self._deliver_error, queued)

    def _owner_gone(self) -> bool:
        # The window that asked may have been closed and deleted while the work ran;
        # its callbacks would then touch a dead C++ object.
        return self._owner is not None and not isValid(self._owner)

    @Slot(object)
    def _deliver_result(self, value: object) -> None:
        _alive.discard(self)
        if self._on_result is not None and not self._owner_gone():
            self._on_result(value)

    @Slot(object)
    def _deliver_error(self, exc: object) -> None:
        _alive.discard(self)
        if self._on_error is not None and isinstance(exc, BaseException) \
                and not self._owner_gone():
            self._on_error(exc)


_alive: set[_Relay] = set()  # a relay must outlive its thread; dropped when it reports


def run_in_background(fn: Callable[[], Any],
                      on_result: Callable[[Any], None] | None = None,
                      on_error: Callable[[BaseException], None] | None = None,
                      name: str = "labdeck-action",
                      owner: QObject | None = None) -> threading.Thread:
    """Start ``fn`` on a daemon thread; the callbacks run later on the calling thread.

    With ``owner``, the callbacks are dropped when that object is deleted first.
    """
    relay = _Relay(on_result, on_error, owner)
    _alive.add(relay)

    def work() -> None:
        try:
            value = fn()
        except Exception as exc:  # travels to the GUI thread as data, shown to the user
            relay.errored.emit(exc)
        else:
            relay.returned.emit(value)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread
