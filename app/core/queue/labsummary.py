"""The lab at a glance, from the hosts' lab boards and the latest samples: per user the
GPUs held now, GPU-hours over the last day and week, waiting demand and since when,
share weight and fair share; reservations; GPUs held but idle. One summary for
``labdeck lab`` and the window's Lab page."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.core.hosts.cluster import HostView
from app.core.queue.labwatch import reservation_text, state_of
from ssh_backend.labboard import Board

# A leased GPU at 0 % for this long is called out as held but idle.
IDLE_AFTER_S = 30 * 60.0
IdleSince = Callable[[str, int], float | None]


def lab_summary(views: list[HostView], boards: dict[str, Board],
                idle_since: IdleSince | None = None) -> dict[str, Any]:
    """JSON-ready: ``gpus``, ``users``, ``reservations``, ``idle_holders``, ``hosts``.
    ``idle_since(host, index)`` (the monitor's) says how long a GPU has read 0 %; without
    it (one look, as ``labdeck lab`` takes) only "0 % now" is known."""
    state = state_of(views, boards)
    entitled = state.entitlements()
    now = time.time()
    used = _usage(boards)
    users = sorted(set(state.held) | set(state.wanted) | set(used))
    waiting_since: dict[str, float] = {}
    for waits in state.waiting.values():
        for wait in waits:
            waiting_since[wait.user] = min(waiting_since.get(wait.user, now), wait.since)
    by_host = {v.name: v for v in views}
    return {
        "gpus": state.gpus_total,
        "users": [{"user": u, "gpus_held": state.held.get(u, 0),
                   "gpus_wanted": state.wanted.get(u, 0),
                   "waiting_since": waiting_since.get(u),
                   "gpu_hours_day": round(used.get(u, (0.0, 0.0))[0], 1),
                   "gpu_hours_week": round(used.get(u, (0.0, 0.0))[1], 1),
                   "weight": state.weight(u), "fair_share_gpus": round(entitled.get(u, 0), 2)}
                  for u in users],
        "reservations": [{"host": host, "gpu_uuid": r.gpu_uuid,
                          "gpu": _index(by_host.get(host), r.gpu_uuid), "user": r.user,
                          "until": r.until, "note": r.note, "text": reservation_text(r)}
                         for host, board in sorted(boards.items()) for r in board.reservations],
        "idle_holders": _idle_holders(by_host, boards, idle_since, now),
        "idle_after_min": int(IDLE_AFTER_S // 60),
        "hosts": sorted(boards),
    }


def _usage(boards: dict[str, Board]) -> dict[str, tuple[float, float]]:
    """Per user, GPU-hours over the last day and week, summed over the hosts."""
    found: dict[str, tuple[float, float]] = {}
    for board in boards.values():
        for item in board.usage:
            day, week = found.get(item.user, (0.0, 0.0))
            found[item.user] = (day + item.day_gpu_h, week + item.week_gpu_h)
    return found


def _idle_holders(by_host: dict[str, HostView], boards: dict[str, Board],
                  idle_since: IdleSince | None, now: float) -> list[dict[str, Any]]:
    """Leased GPUs reading 0 % now, each with how long it has been idle while held
    (``idle_for_s``, None when unknown) and whether that is past IDLE_AFTER_S."""
    idle = []
    for host, board in sorted(boards.items()):
        view = by_host.get(host)
        readings = {r.uuid: r for r in view.sample.gpus} if view and view.sample else {}
        for lease in board.leases:
            reading = readings.get(lease.gpu_uuid)
            if reading is None or reading.util_pct != 0:
                continue
            start = idle_since(host, reading.index) if idle_since else None
            idle_for = None
            if start is not None:
                # Idle while held: not before the lease was taken.
                idle_for = max(0.0, now - max(start, lease.since or start))
            idle.append({"host": host, "gpu": reading.index, "user": lease.user,
                         "run": lease.run_id, "since": lease.since, "idle_for_s": idle_for,
                         "long_idle": idle_for is not None and idle_for >= IDLE_AFTER_S})
    return idle


def _index(view: HostView | None, uuid: str) -> int | None:
    if view is None or view.sample is None:
        return None
    return next((r.index for r in view.sample.gpus if r.uuid == uuid), None)


def minutes_text(seconds: float) -> str:
    """'7 min', '2 h 05 min': how long, for people."""
    minutes = max(0, int(seconds // 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def idle_text(holder: dict[str, Any], after_min: int) -> str:
    """How long a held GPU has been idle, flagged once past the lab's limit."""
    idle_for = holder.get("idle_for_s")
    if idle_for is None:
        return "0 % now"
    text = minutes_text(idle_for)
    return f"{text} — idle past {after_min} min" if holder.get("long_idle") else text
