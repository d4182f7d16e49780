"""The lab at a glance, from the hosts' lab boards and the latest samples: per user the
GPUs held now, waiting demand and since when, share weight and fair share; reservations;
GPUs held but idle. One summary for ``labdeck lab`` and the window's Lab page."""

from __future__ import annotations

import time
from typing import Any

from app.core.cluster import HostView
from app.core.labwatch import reservation_text, state_of
from ssh_backend.labboard import Board


def lab_summary(views: list[HostView], boards: dict[str, Board]) -> dict[str, Any]:
    """JSON-ready: ``gpus``, ``users``, ``reservations``, ``idle_holders``, ``hosts``."""
    state = state_of(views, boards)
    entitled = state.entitlements()
    now = time.time()
    users = sorted(set(state.held) | set(state.wanted))
    waiting_since: dict[str, float] = {}
    for waits in state.waiting.values():
        for wait in waits:
            waiting_since[wait.user] = min(waiting_since.get(wait.user, now), wait.since)
    idle = []
    by_host = {v.name: v for v in views}
    for host, board in boards.items():
        view = by_host.get(host)
        readings = {r.uuid: r for r in view.sample.gpus} if view and view.sample else {}
        for lease in board.leases:
            reading = readings.get(lease.gpu_uuid)
            if reading is not None and reading.util_pct == 0:
                idle.append({"host": host, "gpu": reading.index, "user": lease.user,
                             "run": lease.run_id, "since": lease.since})
    return {
        "gpus": state.gpus_total,
        "users": [{"user": u, "gpus_held": state.held.get(u, 0),
                   "gpus_wanted": state.wanted.get(u, 0),
                   "waiting_since": waiting_since.get(u),
                   "weight": state.weight(u), "fair_share_gpus": round(entitled.get(u, 0), 2)}
                  for u in users],
        "reservations": [{"host": host, "gpu_uuid": r.gpu_uuid,
                          "gpu": _index(by_host.get(host), r.gpu_uuid), "user": r.user,
                          "until": r.until, "note": r.note, "text": reservation_text(r)}
                         for host, board in sorted(boards.items()) for r in board.reservations],
        "idle_holders": idle,
        "hosts": sorted(boards),
    }


def _index(view: HostView | None, uuid: str) -> int | None:
    if view is None or view.sample is None:
        return None
    return next((r.index for r in view.sample.gpus if r.uuid == uuid), None)
