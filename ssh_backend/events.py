"""The plain-Python callbacks a session reports through (no Qt here).

Callbacks run on the session's worker thread: a listener must return quickly and must
not call back into the session from inside them. The UI's bridge re-emits them as Qt
signals on the GUI thread.
"""

from __future__ import annotations

from typing import Any, Protocol

from ssh_backend.protocol import Hello, Sample, TailChunk
from ssh_backend.states import HostState


class SessionListener(Protocol):
    def on_state(self, host: str, state: HostState, detail: str) -> None:
        """The connection changed state; ``detail`` is a user-facing sentence or ''."""

    def on_hello(self, host: str, hello: Hello) -> None:
        """The agent started and described the host and its GPUs."""

    def on_sample(self, host: str, sample: Sample) -> None:
        """A new reading of every GPU of the host."""

    def on_tail(self, host: str, chunk: TailChunk) -> None:
        """New content of a watched run's file (see ``Session.watch``). Per source,
        chunks come in order and contiguous: each starts where the previous one ended,
        unless it has ``reset`` set."""


class SessionUnavailable(Exception):
    """The host is not connected now (or stopped answering mid-request): try again once
    it is back. A launch that ended this way may or may not have started; launch is
    idempotent, so repeating it (or reconciling) settles which."""


class Session(Protocol):
    """One host connection: HostSession over SSH or LocalSession on this machine."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> HostState: ...

    def start(self) -> None:
        """Start the worker thread; returns at once."""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the agent and the worker thread; idempotent."""

    def reconnect_now(self) -> None:
        """Retry at once (after the user trusted a key or fixed a credential)."""

    def control(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """One run-control request to the host's runctl.py, its JSON reply. Raises
        SessionUnavailable when the host cannot be reached now."""

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        """Have the agent tail the run's output.log, metrics.jsonl and tb/ event files
        from ``offsets`` (source → byte offset, missing = 0); chunks arrive through
        ``on_tail``. Queued until the agent is up and re-sent after every reconnect,
        resuming after the last chunk delivered. Calling it again adds sources and moves
        offsets forward, never back (``unwatch`` first for that)."""

    def unwatch(self, run_id: str) -> None:
        """Stop tailing the run."""

    def upload(self, run_id: str, files: dict[str, bytes]) -> None:
        """Write ``files`` (relative path → content) into the run's ``code/`` folder on
        the host (folders 0700, files 0600). Raises SessionUnavailable when not
        connected, ValueError for a path that would leave the folder."""
