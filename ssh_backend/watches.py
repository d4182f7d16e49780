"""The runs a session asks its agent to tail, and where each of their files resumes.

``WatchBook`` is shared by the caller (``watch`` / ``unwatch`` from any thread) and the
session's reader (which sends the commands and reports delivered chunks). It keeps, per
run and source, the resume offset: the caller's offset, moved forward by every chunk the
session has delivered since. On every new agent connection the whole book is sent again,
so a reconnect resumes exactly after the last delivered chunk: nothing is delivered twice
and nothing is skipped, even while the caller has not committed the latest chunks yet.
"""

from __future__ import annotations

import threading

from ssh_backend.protocol import TailChunk, encode_command
from ssh_backend.runs import check_run_id


def _check_offsets(offsets: dict[str, int]) -> dict[str, int]:
    clean = {}
    for source, offset in offsets.items():
        if not isinstance(source, str) or not source:
            raise ValueError(f"not a source name: {source!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset of {source} must be a non-negative integer: {offset!r}")
        clean[source] = offset
    return clean


class WatchBook:
    """Thread-safe; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offsets: dict[str, dict[str, int]] = {}
        self._pending: list[bytes] = []
        self._connected = False

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        """Tail ``run_id`` from ``offsets`` (source → byte offset; missing sources start
        at 0). Offsets never move a source back behind what was already delivered in
        this session: ``unwatch`` first to re-read from an earlier point."""
        check_run_id(run_id)
        clean = _check_offsets(offsets)
        with self._lock:
            book = self._offsets.setdefault(run_id, {})
            for source, offset in clean.items():
                book[source] = max(book.get(source, 0), offset)
            if self._connected:
                self._pending.append(self._command(run_id, book))

    def unwatch(self, run_id: str) -> None:
        with self._lock:
            known = self._offsets.pop(run_id, None) is not None
            if known and self._connected:
                self._pending.append(encode_command("unwatch", run_id=run_id))

    def offsets(self, run_id: str) -> dict[str, int]:
        """Where ``run_id`` would resume now (empty when not watched)."""
        with self._lock:
            return dict(self._offsets.get(run_id, {}))

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._offsets)

    def delivered(self, chunk: TailChunk) -> None:
        """A chunk reached the listener: the source resumes after it."""
        with self._lock:
            book = self._offsets.get(chunk.run_id)
            if book is None:
                return
            if chunk.reset:
                book[chunk.source] = chunk.end
            else:
                book[chunk.source] = max(book.get(chunk.source, 0), chunk.end)

    # -- the reader's side -----------------------------------------------------------
    def connected(self) -> list[bytes]:
        """A new agent said hello: every watch, to send now (replaces anything queued)."""
        with self._lock:
            self._connected = True
            self._pending.clear()
            return [self._command(run_id, book) for run_id, book in self._offsets.items()]

    def disconnected(self) -> None:
        with self._lock:
            self._connected = False
            self._pending.clear()

    def take_pending(self) -> list[bytes]:
        """Commands queued since the last call, to send in order."""
        with self._lock:
            pending, self._pending = self._pending, []
            return pending

    @staticmethod
    def _command(run_id: str, book: dict[str, int]) -> bytes:
        return encode_command("watch", run_id=run_id, offsets=dict(book))
