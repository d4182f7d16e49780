"""A few daemon worker threads for calls to hosts, with at most one task per key.

Daemon threads on purpose: a call stuck on a dead host (up to its own timeout) must not
keep ``labdeck serve`` or the window from exiting. Keys let the dispatcher ask "is a
reconcile of this host already queued or running?" without a second bookkeeping.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Task = Callable[[], None]


class TaskPool:
    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._queue: queue.SimpleQueue[tuple[str, Task] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._unique = itertools.count()
        self._stopping = False

    def start(self) -> None:
        if self._threads:
            return
        for number in range(self._size):
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, key: str | None, task: Task) -> bool:
        """Queue ``task``; False (and nothing queued) if a task with ``key`` is pending.
        ``key=None``: always queued."""
        with self._lock:
            key = key if key is not None else f"#{next(self._unique)}"
            if key in self._keys:
                return False
            self._keys.add(key)
        self._queue.put((key, task))
        return True

    def idle(self) -> bool:
        """No task queued or running."""
        with self._lock:
            return not self._keys

    def stop(self, timeout: float = 5.0) -> None:
        """Let running tasks finish (up to ``timeout`` in all), drop the queued ones."""
        self._stopping = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s still busy with a host call after %.0f s", thread.name, timeout)
        self._threads = []

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, task = item
            try:
                if not self._stopping:
                    task()
            except Exception:
                log.exception("%s: task %s failed", self._name, key)
            finally:
                with self._lock:
                    self._keys.discard(key)
