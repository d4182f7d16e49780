"""The worker thread shared by HostSession and LocalSession: state, stop, wake, backoff.

A subclass implements ``_attempt`` (connect, run the agent until the connection ends) and
``_interrupt`` (close whatever ``_attempt`` is blocked on). This class decides what comes
next: retry with exponential backoff and jitter, wait for the user (terminal states), or
stop. Every listener callback runs on the worker thread.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

from ssh_backend.agent_channel import AgentStream, Heartbeat, StreamEnd, last_line
from ssh_backend.connect import Timeouts
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.states import HostState
from ssh_backend.watches import WatchBook

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: the state to show, and whether the agent ever said hello."""

    state: HostState
    detail: str
    reached_agent: bool = False
    retry_now: bool = False


def outcome_of(end: StreamEnd, agent: str, stream: AgentStream) -> Outcome:
    """The outcome of an agent connection that ended as ``end``; ``agent`` names it."""
    hello = end.got_hello
    if end.reason in ("stopped", "wake"):
        return Outcome(HostState.CONNECTING, end.detail, hello, retry_now=True)
    if end.reason == "dead":
        return Outcome(HostState.OFFLINE, end.detail, hello)
    if end.reason == "failed":
        return Outcome(HostState.AGENT_FAILED, end.detail, hello)
    code = stream.exit_status(2.0)
    why = last_line(stream.stderr_text()) or end.detail or "no error output"
    return Outcome(HostState.AGENT_FAILED, f"{agent} exited (code {code}): {why}", hello)


class Backoff:
    """1 s, 2 s, 4 s … up to a cap, each scaled by a random 0.75 to 1.0 so that many
    sessions dropped by one network blip do not all reconnect in the same instant."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        return base * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.failures = 0


class WorkerSession:
    """One thread per host, alive from ``start()`` to ``stop()``."""

    def __init__(self, spec: HostSpec, listener: SessionListener, timeouts: Timeouts) -> None:
        self.spec = spec
        self.timeouts = timeouts
        self._listener = listener
        self._state = HostState.STOPPED
        self._detail = ""
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempts = 0
        # Runs whose files the agent tails; re-sent on every new agent connection.
        self.watches = WatchBook()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> HostState:
        with self._state_lock:
            return self._state

    @property
    def attempts(self) -> int:
        """Connect attempts made so far (each retry counts)."""
        return self._attempts

    @property
    def detail(self) -> str:
        with self._state_lock:
            return self._detail

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            ping_interval=self.timeouts.ping_interval,
            # Three sample intervals plus slack for a slow link: then the values are old.
            stale_after=3 * self.spec.agent.interval_s + 2.0,
            dead_after=self.timeouts.dead_after,
        )

    def start(self) -> None:
        """Start the worker thread (once; later calls do nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"labdeck-session-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and join the thread; idempotent."""
        self._stop.set()
        self._wake.set()
        self._interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: session thread still busy after %.0f s", self.name, timeout)

    def reconnect_now(self) -> None:
        """Reconnect at once: after a key was trusted, a setting fixed, or on request."""
        self._wake.set()

    def watch(self, run_id: str, offsets: dict[str, int]) -> None:
        """Tail run ``run_id``'s files from ``offsets``: sent now if the agent is up,
        else once it is, and again after every reconnect (see WatchBook)."""
        self.watches.watch(run_id, offsets)

    def unwatch(self, run_id: str) -> None:
        """Stop tailing ``run_id`` (and forget its offsets)."""
        self.watches.unwatch(run_id)

    def _set_state(self, state: HostState, detail: str = "") -> None:
        with self._state_lock:
            if (state, detail) == (self._state, self._detail):
                return
            self._state, self._detail = state, detail
        try:
            self._listener.on_state(self.name, state, detail)
        except Exception:
            # A broken listener must not kill the session thread.
            log.exception("%s: listener failed in on_state", self.name)

    def _attempt(self) -> Outcome:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Unblock ``_attempt`` from another thread (close its connection)."""

    def _run(self) -> None:
        backoff = Backoff(self.timeouts.backoff_initial, self.timeouts.backoff_max)
        announce = True
        while not self._stop.is_set():
            self._wake.clear()
            if announce:
                self._set_state(HostState.CONNECTING, "")
            self._attempts += 1
            try:
                outcome = self._attempt()
            except Exception as exc:
                # A bug, not an expected failure: report it, keep the thread alive, retry.
                log.exception("%s: unexpected error in the session", self.name)
                outcome = Outcome(HostState.OFFLINE, f"internal error: {exc!r}")
            if self._stop.is_set():
                break
            if outcome.reached_agent:
                backoff.reset()
            if outcome.retry_now or self._wake.is_set():
                announce = True
                continue
            if outcome.state.is_terminal:
                # The user must act (trust a key, fix a login): no retry until woken.
                self._set_state(outcome.state, outcome.detail)
                self._wake.wait()
                announce = True
                continue
            delay = backoff.next_delay()
            when = f"{delay:.1f}" if delay < 10 else f"{delay:.0f}"
            self._set_state(outcome.state, f"{outcome.detail}; retrying in {when} s")
            announce = self._wake.wait(delay)
        self._set_state(HostState.STOPPED, "")
