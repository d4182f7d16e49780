"""The live picture of the lab: every host's state, its GPUs' latest readings and history.

``ClusterMonitor`` owns one session per host (through an injected factory, so tests and the
demo lab can choose the session kind), receives their callbacks on the sessions' worker
threads, keeps the latest state under a lock, and publishes what changed on its event bus
(``HostChanged``, ``HostSample``, ``HostRemoved``; ``app.core.events``). Subscribers (the
dispatcher, the UI's bridge) read a consistent copy with ``host()`` when they need more.

It is also where what a host sends is checked against what Labdeck gave it: runs are
watched through ``watch()``, which records the host each run (its id on the host) was
placed on, and a tail chunk reaches the tail listeners only from that host. Tail chunks
are not bus events: they are bulk data, and their one consumer (the ingestor) pushes back
by blocking the session thread while its queue is full, which a bus must not let one
handler do to the others. Anything else
is dropped with a rate-limited warning and a note on the host's view (``HostView.note``),
which also says what decoding cut from an oversized hello or sample and what the bounds
across messages left out (``app.core.hosts.hostguard``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.events import EventBus, HostChanged, HostRemoved, HostSample
from app.core.hosts.hostguard import HostGuard
from ssh_backend.events import Session, SessionListener
from ssh_backend.hostspec import HostSpec
from ssh_backend.limits import MAX_GPUS
from ssh_backend.protocol import GpuReading, Hello, Sample, TailChunk
from ssh_backend.states import HostState

SessionFactory = Callable[[HostSpec, SessionListener], Session]
TailListener = Callable[[str, TailChunk], None]

log = logging.getLogger(__name__)

# Sparklines show the last few minutes; at 10 Hz this caps memory at 6000 points per GPU.
DEFAULT_HISTORY_S = 600.0
_HISTORY_POINTS = 6000
# A host in one of these states has a live agent connection; any other ends it.
_CONNECTED = (HostState.ONLINE, HostState.STALE, HostState.NEEDS_REBOOT)


@dataclass(slots=True)
class GpuHistory:
    """Recent values of one GPU, oldest first; ``None`` where the value was unsupported."""

    times: deque[float] = field(default_factory=lambda: deque(maxlen=_HISTORY_POINTS))
    util_pct: deque[float | None] = field(default_factory=lambda: deque(maxlen=_HISTORY_POINTS))
    mem_pct: deque[float | None] = field(default_factory=lambda: deque(maxlen=_HISTORY_POINTS))

    def append(self, t: float, reading: GpuReading) -> None:
        self.times.append(t)
        self.util_pct.append(reading.util_pct)
        mem = None
        if reading.mem_used_mib is not None and reading.mem_total_mib:
            mem = 100.0 * reading.mem_used_mib / reading.mem_total_mib
        self.mem_pct.append(mem)

    def copy(self, since: float | None = None) -> GpuHistory:
        out = GpuHistory()
        for t, u, m in zip(self.times, self.util_pct, self.mem_pct, strict=True):
            if since is None or t >= since:
                out.times.append(t)
                out.util_pct.append(u)
                out.mem_pct.append(m)
        return out


@dataclass(frozen=True, slots=True)
class HostView:
    """A consistent copy of what is known about one host."""

    spec: HostSpec
    state: HostState = HostState.CONNECTING
    detail: str = ""
    hello: Hello | None = None
    sample: Sample | None = None
    # Wall time (this machine's clock) at which the last sample arrived.
    sample_received_at: float | None = None
    # What Labdeck left out of what the host sent, in plain words ('' when nothing):
    # GPUs or processes beyond the bounds, data for runs not placed on it.
    note: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def simulated(self) -> bool:
        return self.spec.simulated or bool(self.hello and self.hello.simulated)


class _Listener:
    """Adapts one session's callbacks to the monitor (keeps the monitor's API small)."""

    def __init__(self, monitor: ClusterMonitor) -> None:
        self._monitor = monitor

    def on_state(self, host: str, state: HostState, detail: str) -> None:
        self._monitor._update(host, state=state, detail=detail)

    def on_hello(self, host: str, hello: Hello) -> None:
        self._monitor._on_hello(host, hello)

    def on_sample(self, host: str, sample: Sample) -> None:
        self._monitor._on_sample(host, sample)

    def on_tail(self, host: str, chunk: TailChunk) -> None:
        self._monitor._on_tail(host, chunk)


class ClusterMonitor:
    """See the module docstring. ``bus``: where host events go (default: a new one; the
    Lab passes its own, and its dispatcher and ingestor use ``monitor.bus``)."""

    def __init__(
        self, session_factory: SessionFactory, history_s: float = DEFAULT_HISTORY_S,
        *, bus: EventBus | None = None,
    ) -> None:
        self.bus = bus if bus is not None else EventBus()
        self._factory = session_factory
        self._history_s = history_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._views: dict[str, HostView] = {}
        self._sessions: dict[str, Session] = {}
        self._history: dict[tuple[str, int], GpuHistory] = {}
        # (host, GPU index) → when the GPU was first seen at 0 % in its current idle
        # stretch: "held but idle for N minutes" outlives the sparklines' history.
        self._idle_from: dict[tuple[str, int], float] = {}
        self._tail_listeners: list[TailListener] = []
        self._started = False
        # Run (its id on the host) → the host it was placed on, for every run watched.
        # Kept after unwatch: late chunks from that host are still its own.
        self._owners: dict[str, str] = {}
        self._guards: dict[str, HostGuard] = {}

    # -- lifecycle -----------------------------------------------------------------
    def add_tail_listener(self, fn: TailListener) -> None:
        """Call ``fn(host, chunk)`` for every tail chunk of a watched run, on the host's
        session thread: it must return quickly (queue the chunk, write elsewhere)."""
        self._tail_listeners = [*self._tail_listeners, fn]

    def remove_tail_listener(self, fn: TailListener) -> None:
        self._tail_listeners = [known for known in self._tail_listeners if known is not fn]

    def start(self) -> None:
        with self._lock:
            self._started = True
            sessions = list(self._sessions.values())
        for session in sessions:
            session.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._started = False
            sessions = list(self._sessions.values())
        # Stop all first, then wait: a dead host must not delay the others' shutdown.
        threads = [threading.Thread(target=s.stop, args=(timeout,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 1)

    def set_hosts(self, specs: Iterable[HostSpec]) -> None:
        for spec in specs:
            self.add_host(spec)

    def add_host(self, spec: HostSpec) -> None:
        with self._lock:
            if spec.name in self._sessions:
                raise ValueError(f"host {spec.name!r} is already monitored")
            session = self._factory(spec, _Listener(self))
            self._sessions[spec.name] = session
            view = self._views[spec.name] = HostView(spec=spec)
            self._guards[spec.name] = HostGuard()
            started = self._started
        self.bus.publish(HostChanged(spec.name, view))
        if started:
            session.start()

    def remove_host(self, name: str) -> None:
        with self._lock:
            session = self._sessions.pop(name, None)
            self._views.pop(name, None)
            self._guards.pop(name, None)
            for key in [k for k in self._history if k[0] == name]:
                del self._history[key]
            for key in [k for k in self._idle_from if k[0] == name]:
                del self._idle_from[key]
            for run in [r for r, owner in self._owners.items() if owner == name]:
                del self._owners[run]
        if session is not None:
            threading.Thread(target=session.stop, daemon=True).start()
            self.bus.publish(HostRemoved(name))

    def reconnect(self, name: str) -> None:
        """Try host ``name`` again now (after a key was trusted or a key fixed)."""
        with self._lock:
            session = self._sessions.get(name)
        if session is not None:
            session.reconnect_now()

    def watch(self, name: str, run_key: str, offsets: dict[str, int]) -> bool:
        """Have host ``name``'s agent tail run ``run_key`` (its id on that host) from
        ``offsets``; from now on tail chunks of ``run_key`` are accepted from ``name``
        only. False when ``name`` is not monitored."""
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                return False
            self._owners[run_key] = name
        session.watch(run_key, offsets)
        return True

    def unwatch(self, name: str, run_key: str) -> None:
        """Stop tailing ``run_key`` on ``name`` (chunks already on their way from that
        host are still delivered)."""
        session = self.session(name)
        if session is not None:
            session.unwatch(run_key)

    # -- reading -------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return list(self._views)

    def host(self, name: str) -> HostView | None:
        with self._lock:
            return self._views.get(name)

    def hosts(self) -> list[HostView]:
        with self._lock:
            return list(self._views.values())

    def session(self, name: str) -> Session | None:
        """The live session of host ``name`` (for run control calls), or None."""
        with self._lock:
            return self._sessions.get(name)

    def history(self, name: str, gpu_index: int, seconds: float | None = None) -> GpuHistory:
        since = time.time() - seconds if seconds else None
        with self._lock:
            hist = self._history.get((name, gpu_index))
            return hist.copy(since) if hist else GpuHistory()

    def idle_since(self, name: str, gpu_index: int) -> float | None:
        """Since when (wall time) GPU ``gpu_index`` of ``name`` has read 0 % in every
        sample seen, or None when it is busy or its load is unknown."""
        with self._lock:
            return self._idle_from.get((name, gpu_index))

    def wait_until(self, predicate: Callable[[list[HostView]], bool], timeout: float) -> bool:
        """Block (never on the GUI thread) until ``predicate(hosts)`` holds or time runs out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._views.values())):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # -- session callbacks (worker threads) ------------------------------------------
    def _update(self, name: str, **changes: Any) -> None:
        with self._changed:
            view = self._views.get(name)
            guard = self._guards.get(name)
            if view is None or guard is None:
                return
            if "state" in changes and changes["state"] not in _CONNECTED:
                guard.connection_ended()
            view = self._views[name] = replace(view, **changes)
            self._changed.notify_all()
        self.bus.publish(HostChanged(name, view))

    def _on_hello(self, name: str, hello: Hello) -> None:
        with self._lock:
            guard = self._guards.get(name)
            if guard is None:
                return
            shown = guard.hello(hello)
            note = guard.note
        if shown:
            self._update(name, hello=hello, note=note)
        else:
            self._update(name, note=note)

    def _on_sample(self, name: str, sample: Sample) -> None:
        now = time.time()
        with self._changed:
            view = self._views.get(name)
            guard = self._guards.get(name)
            if view is None or guard is None:
                return
            sample = guard.sample(sample)
            for reading in sample.gpus:
                key = (name, reading.index)
                hist = self._history.get(key)
                if hist is None:
                    hist = self._history[key] = GpuHistory()
                    self._forget_old_gpus(name, sample)
                hist.append(now, reading)
                if reading.util_pct == 0:
                    self._idle_from.setdefault(key, now)
                else:
                    self._idle_from.pop(key, None)
                while hist.times and hist.times[0] < now - self._history_s:
                    hist.times.popleft()
                    hist.util_pct.popleft()
                    hist.mem_pct.popleft()
            self._views[name] = replace(view, sample=sample, sample_received_at=now,
                                        note=guard.note)
            self._changed.notify_all()
        self.bus.publish(HostSample(name, sample, now))

    def _forget_old_gpus(self, name: str, sample: Sample) -> None:
        """Drop the history of GPUs the host no longer reports, once it has more than a
        host may have: a host that numbers its GPUs anew in every sample must not grow
        memory without end (lock held)."""
        mine = [key for key in self._history if key[0] == name]
        if len(mine) > MAX_GPUS:
            current = {reading.index for reading in sample.gpus}
            for key in mine:
                if key[1] not in current:
                    del self._history[key]
                    self._idle_from.pop(key, None)

    def _on_tail(self, name: str, chunk: TailChunk) -> None:
        with self._lock:
            owner = self._owners.get(chunk.run_id)
        if owner != name:
            self._on_foreign_tail(name, chunk)
            return
        for fn in self._tail_listeners:
            try:
                fn(name, chunk)
            except Exception:
                # One broken consumer must not starve the others of the chunk.
                log.exception("tail listener failed for %s on %s", chunk.run_id, name)

    def _on_foreign_tail(self, name: str, chunk: TailChunk) -> None:
        """``name`` sent a chunk of a run it does not hold: dropped, never stored. Said
        once on the host's view, in the log at most every ``hostguard.FOREIGN_LOG_S``."""
        with self._changed:
            view = self._views.get(name)
            guard = self._guards.get(name)
            if view is None or guard is None:
                return
            report = guard.foreign(chunk.run_id, time.monotonic())
            if report is not None and report.note_added:
                view = self._views[name] = replace(view, note=guard.note)
                self._changed.notify_all()
        if report is None:
            return
        log.warning("%s sent %d tail chunks for runs Labdeck did not place on it (such as "
                    "%s); ignored", name, report.chunks, ", ".join(map(ascii, report.runs)))
        if report.note_added:
            self.bus.publish(HostChanged(name, view))
