"""A SessionListener for tests: records every callback with its time, waits on them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ssh_backend.protocol import Hello, Sample
from ssh_backend.session import HostSession
from ssh_backend.states import HostState

# The ``make_session`` fixture of tests/integration: (spec, listener, known_hosts, ...).
SessionFactory = Callable[..., HostSession]


@dataclass(frozen=True)
class StateEvent:
    time: float
    host: str
    state: HostState
    detail: str
    thread: str


class Recorder:
    """Thread-safe log of states, hellos and samples per host."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.states: list[StateEvent] = []
        self.hellos: dict[str, list[Hello]] = {}
        self.samples: dict[str, list[tuple[float, Sample]]] = {}
        self.callback_threads: set[str] = set()

    def on_state(self, host: str, state: HostState, detail: str) -> None:
        with self._cond:
            name = threading.current_thread().name
            self.callback_threads.add(name)
            self.states.append(StateEvent(time.monotonic(), host, state, detail, name))
            self._cond.notify_all()

    def on_hello(self, host: str, hello: Hello) -> None:
        with self._cond:
            self.callback_threads.add(threading.current_thread().name)
            self.hellos.setdefault(host, []).append(hello)
            self._cond.notify_all()

    def on_sample(self, host: str, sample: Sample) -> None:
        with self._cond:
            self.callback_threads.add(threading.current_thread().name)
            self.samples.setdefault(host, []).append((time.monotonic(), sample))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def states_of(self, host: str) -> list[StateEvent]:
        with self._cond:
            return [e for e in self.states if e.host == host]

    def last_state(self, host: str) -> StateEvent | None:
        events = self.states_of(host)
        return events[-1] if events else None

    def sample_count(self, host: str) -> int:
        with self._cond:
            return len(self.samples.get(host, []))

    def mark(self) -> int:
        """A position in the state log, for ``wait_state(..., since=mark)``."""
        with self._cond:
            return len(self.states)

    def wait_state(
        self,
        host: str,
        states: HostState | tuple[HostState, ...],
        timeout: float,
        since: int = 0,
    ) -> StateEvent:
        """The first event of ``host`` in ``states`` at or after ``since``; fails on timeout."""
        wanted = states if isinstance(states, tuple) else (states,)
        start = since
        found: list[StateEvent] = []

        def seen() -> bool:
            found[:] = [e for e in self.states[start:] if e.host == host and e.state in wanted]
            return bool(found)

        if not self.wait_for(seen, timeout):
            history = [(e.state.value, e.detail) for e in self.states_of(host)]
            raise AssertionError(f"{host} never reached {wanted} in {timeout} s: {history}")
        return found[0]

    def wait_samples(self, host: str, count: int, timeout: float) -> None:
        """Wait until ``count`` more samples of ``host`` arrive from now on."""
        target = self.sample_count(host) + count
        if not self.wait_for(lambda: len(self.samples.get(host, [])) >= target, timeout):
            raise AssertionError(
                f"{host}: {self.sample_count(host)} samples, wanted {target} within {timeout} s;"
                f" states: {[(e.state.value, e.detail) for e in self.states_of(host)]}"
            )
