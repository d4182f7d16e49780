"""The one worker shape: a background thread per owner, requests in, results out as signals.

Every SQLite read (and the numpy work that follows it: smoothing, decimation, CSV
writing) of a window goes through its ``DataWorker``, so the GUI thread never waits on
the store's lock or the disk; so do the window's actions (store writes, host calls).
Requests carry a key; a newer request with the same key replaces one that has not
started yet, and a result whose key was requested again meanwhile is dropped (a zoom that
moved on makes the old decimation useless). Results and errors come back as data, on the
thread that created the worker, and never once it was stopped or deleted with its owner.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from shiboken6 import isValid


@dataclass(slots=True)
class _Request:
    key: str
    serial: int
    fn: Callable[[], Any]
    on_result: Callable[[Any], None] | None
    on_error: Callable[[BaseException], None] | None


class DataWorker(QObject):
    """A single worker thread; callbacks always run on the thread that created it."""

    returned = Signal(str, object)  # key, value (after the callback ran)
    errored = Signal(str, object)  # key, exception
    idle = Signal()  # the queue ran empty after at least one request

    _done = Signal(object, object, bool)  # request, value or exception, ok

    def __init__(self, name: str = "labdeck-data", parent: QObject | None = None, *,
                 idle_exit: bool = False) -> None:
        """``idle_exit``: the thread ends whenever the queue runs empty and starts again
        with the next request (occasional actions: no thread waits on for nothing)."""
        super().__init__(parent)
        self._name = name
        self._idle_exit = idle_exit
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: collections.OrderedDict[str, _Request] = collections.OrderedDict()
        self._latest: dict[str, int] = {}
        self._serial = 0
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    # -- GUI thread ------------------------------------------------------------------
    def submit(self, key: str, fn: Callable[[], Any],
               on_result: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> None:
        """Run ``fn`` on the worker; a pending request with the same ``key`` is replaced."""
        with self._lock:
            if self._stopping:
                return
            self._serial += 1
            request = _Request(key, self._serial, fn, on_result, on_error)
            self._latest[key] = request.serial
            self._pending.pop(key, None)
            self._pending[key] = request
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name,
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def is_busy(self) -> bool:
        """True while a request waits or runs (tests wait for ``idle``)."""
        with self._lock:
            return self._busy or bool(self._pending)

    def stop(self, timeout: float = 5.0, *, finish_pending: bool = False) -> None:
        """Drop what is pending (``finish_pending``: run it, reporting nothing back: a
        last save of a closing window), let the running request finish, end the thread
        (waiting for it up to ``timeout``)."""
        with self._lock:
            self._stopping = True
            if not finish_pending:
                self._pending.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @Slot(object, object, bool)
    def _deliver(self, request: _Request, value: object, ok: bool) -> None:
        with self._lock:
            stale = self._stopping or self._latest.get(request.key) != request.serial
            empty = not self._pending and not self._busy
        if not stale:
            if ok:
                if request.on_result is not None:
                    request.on_result(value)
                self.returned.emit(request.key, value)
            else:
                if request.on_error is not None and isinstance(value, BaseException):
                    request.on_error(value)
                self.errored.emit(request.key, value)
        if empty and not self._stopping:
            self.idle.emit()

    # -- worker thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping and not self._idle_exit:
                    self._wake.wait()
                if not self._pending:
                    self._thread = None  # stopped, or idle: the next submit starts anew
                    return
                _key, request = self._pending.popitem(last=False)
                self._busy = True
            try:
                value: object = request.fn()
                ok = True
            except Exception as exc:  # travels to the GUI thread as data, shown there
                value, ok = exc, False
            with self._lock:
                self._busy = False
                if self._stopping:
                    continue
            if isValid(self):  # deleted with its owner meanwhile: nobody is left to tell
                self._done.emit(request, value, ok)
