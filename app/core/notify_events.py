"""What is worth a notification: finished runs and watched conditions, as plain events.

Qt-free. The UI feeds this module what it read (a run and its metric series, free GPUs
per host, each running run's progress) and shows whatever events come back. The per-user
choices live in the store's settings under ``notifications``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.metricstore import MetricStore, SeriesInfo
from app.core.queue.gpufree import free_gpus
from app.core.queue.runs import FINISHED, Run, RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store

SETTINGS_KEY = "notifications"

# Event kinds; the finished ones are named after the state they report.
RUN_EVENTS = ("succeeded", "failed", "cancelled", "lost")
GPUS_FREE = "gpus_free"
RUN_STALLED = "run_stalled"

_VERBS = {
    RunState.SUCCEEDED: "finished",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "was cancelled",
    RunState.LOST: "was lost",
}


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Which events pop up, and the watched conditions (0 turns a condition off)."""

    events: frozenset[str] = frozenset(RUN_EVENTS)
    # Record in the list but show no popup while the window has the focus.
    quiet_when_focused: bool = True
    # "N GPUs free on any host": fires when some host reaches N free GPUs.
    free_gpus: int = 0
    # "run X stalled": no new output and 0% GPU for this many minutes.
    stall_minutes: float = 0.0
    # Runs to watch for stalls; empty means every running run.
    stall_runs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": sorted(self.events),
            "quiet_when_focused": self.quiet_when_focused,
            "free_gpus": self.free_gpus,
            "stall_minutes": self.stall_minutes,
            "stall_runs": list(self.stall_runs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> NotifySettings:
        """Tolerant of missing or malformed keys (an older Labdeck wrote them)."""
        if not isinstance(data, Mapping):
            return cls()
        known = set(RUN_EVENTS) | {GPUS_FREE, RUN_STALLED}
        events = data.get("events")
        chosen = (frozenset(str(e) for e in events if str(e) in known)
                  if isinstance(events, list) else cls().events)
        return cls(
            events=chosen,
            quiet_when_focused=bool(data.get("quiet_when_focused", True)),
            free_gpus=max(0, _int(data.get("free_gpus"), 0)),
            stall_minutes=max(0.0, _float(data.get("stall_minutes"), 0.0)),
            stall_runs=tuple(str(r) for r in data.get("stall_runs") or ()),
        )

    def wants(self, kind: str) -> bool:
        """Whether an event of ``kind`` should pop up (watched conditions always do)."""
        return kind in (GPUS_FREE, RUN_STALLED) or kind in self.events


def load_settings(store: Store) -> NotifySettings:
    """Blocks on SQLite: call from a worker thread."""
    return NotifySettings.from_dict(store.get_setting(SETTINGS_KEY))


def save_settings(store: Store, settings: NotifySettings) -> None:
    store.set_setting(SETTINGS_KEY, settings.to_dict())


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    kind: str
    title: str
    body: str
    run_id: str | None = None
    host: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        return f"{self.title} — {self.body}" if self.body else self.title


# -- finished runs ------------------------------------------------------------------------
def main_metric(series: Sequence[SeriesInfo]) -> SeriesInfo | None:
    """The first series whose name contains "loss", else the first series."""
    ordered = sorted(series, key=lambda s: s.name)
    for info in ordered:
        if "loss" in info.name.lower():
            return info
    return ordered[0] if ordered else None


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "unknown duration"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_value(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def finished_event(run: Run, series: Sequence[SeriesInfo]) -> NotifyEvent:
    """The notification of a finished run: name, outcome, host, duration, main metric."""
    verb = _VERBS.get(run.state, str(run.state))
    where = run.host or "no host"
    if run.gpus:
        where += ":" + ",".join(str(g) for g in run.gpus)
    duration = None
    if run.started_at is not None:
        duration = (run.ended_at or time.time()) - run.started_at
    parts = [f"on {where}", format_duration(duration)]
    metric = main_metric(series)
    if metric is not None:
        parts.append(f"{metric.name} {format_value(metric.last_value)}")
    if run.state is RunState.FAILED and run.exit_code is not None:
        parts.append(f"exit code {run.exit_code}")
    if run.reason and run.state in (RunState.FAILED, RunState.LOST):
        parts.append(run.reason)
    return NotifyEvent(kind=str(run.state), title=f"{run.name} {verb}",
                       body=" · ".join(parts), run_id=run.id, host=run.host)


class FinishTracker:
    """Says once per attempt that a run has finished, however often it is reported."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, int]] = set()

    def is_new_finish(self, run: Run) -> bool:
        if run.state not in FINISHED:
            return False
        key = (run.id, run.attempt)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


# -- watched conditions -------------------------------------------------------------------
class FreeGpuWatch:
    """Fires when some host has at least ``threshold`` free GPUs; once, until it stops
    holding (a GPU freed and retaken many times a minute must not flood the user)."""

    def __init__(self) -> None:
        self._holding = False

    def check(self, free_by_host: Mapping[str, int], threshold: int) -> NotifyEvent | None:
        if threshold <= 0:
            self._holding = False
            return None
        hosts = sorted((h for h, n in free_by_host.items() if n >= threshold),
                       key=lambda h: (-free_by_host[h], h))
        if not hosts:
            self._holding = False
            return None
        if self._holding:
            return None
        self._holding = True
        best = hosts[0]
        others = f" (also {', '.join(hosts[1:])})" if len(hosts) > 1 else ""
        return NotifyEvent(kind=GPUS_FREE,
                           title=f"{free_by_host[best]} GPUs free on {best}",
                           body=f"watching for {threshold} free GPUs on any host{others}",
                           host=best)


@dataclass(frozen=True, slots=True)
class RunProgress:
    """What a poll saw of one running run: a token that changes with new output (log size,
    point counts) and whether any of its GPUs did work since the last poll (None: unknown)."""

    run_id: str
    name: str
    host: str | None
    output_token: tuple[Any, ...]
    gpu_busy: bool | None


@dataclass(slots=True)
class _RunClock:
    token: tuple[Any, ...]
    last_output: float
    last_busy: float
    notified: bool = False


class StallWatch:
    """"run X stalled": no new output and 0% GPU for N minutes, once per stall."""

    def __init__(self) -> None:
        self._clocks: dict[str, _RunClock] = {}

    def check(self, progress: Iterable[RunProgress], minutes: float,
              only: Sequence[str] = (), now: float | None = None) -> list[NotifyEvent]:
        now = time.time() if now is None else now
        events: list[NotifyEvent] = []
        seen: set[str] = set()
        for p in progress:
            seen.add(p.run_id)
            clock = self._clocks.get(p.run_id)
            if clock is None:
                clock = self._clocks[p.run_id] = _RunClock(p.output_token, now, now)
            if p.output_token != clock.token:
                clock.token, clock.last_output, clock.notified = p.output_token, now, False
            # Unknown GPU use (host offline, no reading) is no evidence of a stall.
            if p.gpu_busy is not False:
                clock.last_busy = now
                if p.gpu_busy:
                    clock.notified = False
            if minutes <= 0 or (only and p.run_id not in only) or clock.notified:
                continue
            quiet_since = max(clock.last_output, clock.last_busy)
            if now - quiet_since >= minutes * 60:
                clock.notified = True
                events.append(NotifyEvent(
                    kind=RUN_STALLED, title=f"{p.name} stalled",
                    body=f"no new output and 0% GPU for {format_duration(now - quiet_since)}"
                         f" on {p.host or 'its host'}",
                    run_id=p.run_id, host=p.host))
        for gone in set(self._clocks) - seen:  # finished or cancelled: forget it
            del self._clocks[gone]
        return events


# -- reading (worker threads: these block on SQLite) --------------------------------------
def read_finished(runstore: RunStore, metricstore: MetricStore,
                  run_id: str) -> tuple[Run, list[SeriesInfo]] | None:
    """The run and its series summaries (of its current attempt), or None if deleted."""
    run = runstore.get(run_id)
    if run is None:
        return None
    series = metricstore.series(run.host_run_id) if run.state in FINISHED else []
    return run, series


def free_by_host(monitor: ClusterMonitor,
                 reserved: Collection[tuple[str, int]]) -> dict[str, int]:
    """Free GPUs of every online host, by the scheduler's own rule."""
    return {view.name: len(free_gpus(view, reserved)) for view in monitor.hosts()}


def read_progress(runstore: RunStore, metricstore: MetricStore,
                  monitor: ClusterMonitor | None, window_s: float) -> list[RunProgress]:
    """What each running run did lately: output size and GPU use over ``window_s``."""
    out = []
    for run in runstore.list_runs(states=[RunState.RUNNING]):
        key = run.host_run_id
        token = (metricstore.log_size(key),
                 tuple((s.name, s.count) for s in metricstore.series(key)))
        busy: bool | None = None
        if monitor is not None and run.host and run.gpus:
            utils = [u for g in run.gpus
                     for u in monitor.history(run.host, g, window_s).util_pct if u is not None]
            busy = any(u > 0 for u in utils) if utils else None
        out.append(RunProgress(run.id, run.name, run.host, token, busy))
    return out


def with_stall_runs(settings: NotifySettings, runs: Iterable[str]) -> NotifySettings:
    return replace(settings, stall_runs=tuple(dict.fromkeys(runs)))


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default
