"""A scripted session for the ingest tests: online at once, records what it is asked to
watch, and delivers tail chunks from a thread of its own, as a real session does."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ssh_backend.events import SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import TailChunk
from ssh_backend.states import HostState


class TailSession:
    """Online at once; records watch/unwatch; delivers chunks from its own thread."""

    def __init__(self, spec: HostSpec, listener: SessionListener) -> None:
        self.spec = spec
        self.listener = listener
        self.lock = threading.Lock()
        self.watches: list[tuple[str, dict[str, int]]] = []
        self.unwatches: list[str] = []
        # What it is asked to watch now (run id → offsets).
        self.watched: dict[str, dict[str, int]] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> HostState:
        return HostState.ONLINE

    def start(self) -> None:
        self._on_worker(lambda: self.listener.on_state(self.name, HostState.ONLINE, ""))

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def reconnect_now(self) -> None:
        pass

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        with self.lock:
            self.watches.append((run_id, dict(offsets)))
            self.watched[run_id] = dict(offsets)

    def unwatch(self, run_id: str) -> None:
        with self.lock:
            self.unwatches.append(run_id)
            self.watched.pop(run_id, None)

    def go(self, state: HostState) -> None:
        self._on_worker(lambda: self.listener.on_state(self.name, state, ""))

    def tail(self, *chunks: TailChunk) -> None:
        def deliver() -> None:
            for chunk in chunks:
                self.listener.on_tail(self.name, chunk)

        self._on_worker(deliver)

    def _on_worker(self, fn: Callable[[], None]) -> None:
        thread = threading.Thread(target=fn, name=f"fake-{self.name}")
        thread.start()
        thread.join(10)

    def last_watch(self, run_id: str) -> dict[str, int] | None:
        with self.lock:
            found = [offsets for rid, offsets in self.watches if rid == run_id]
        return found[-1] if found else None
