"""The plain-Python callbacks a session reports through (no Qt here).

Callbacks run on the session's worker thread: a listener must return quickly and must
not call back into the session from inside them. The UI's bridge re-emits them as Qt
signals on the GUI thread.
"""

from __future__ import annotations

from typing import Protocol

from ssh_backend.protocol import Hello, Sample
from ssh_backend.states import HostState


class SessionListener(Protocol):
    def on_state(self, host: str, state: HostState, detail: str) -> None:
        """The connection changed state; ``detail`` is a user-facing sentence or ''."""

    def on_hello(self, host: str, hello: Hello) -> None:
        """The agent started and described the host and its GPUs."""

    def on_sample(self, host: str, sample: Sample) -> None:
        """A new reading of every GPU of the host."""


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

