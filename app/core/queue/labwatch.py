"""The lab boards of the hosts, kept fresh for the dispatcher: each online host is asked
every few seconds (publishing this Labdeck's waiting demand in the same call), and what
they say becomes the reservations every placement honours and the lab-wide fair-share
view (``app.core.queue.fairshare``). A board not renewed for a while is dropped: an unreachable
host's old word does not decide for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from app.core.hosts.cluster import HostView
from app.core.queue.fairshare import LabState, lab_state
from ssh_backend import labboard
from ssh_backend.labboard import Board, Reservation

log = logging.getLogger(__name__)

GpuKey = tuple[str, int]


def reservation_text(item: Reservation) -> str:
    """'reserved by alice until 18:00 — note' (today's times without the date)."""
    stamp = time.localtime(item.until)
    same_day = time.strftime("%Y-%m-%d", stamp) == time.strftime("%Y-%m-%d")
    until = time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", stamp)
    return f"reserved by {item.user} until {until}" + (f" — {item.note}" if item.note else "")


class LabWatch:
    def __init__(self, every_s: float = 5.0, stale_s: float = 60.0) -> None:
        self.every_s = every_s
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._boards: dict[str, tuple[Board, float]] = {}
        self._asked: dict[str, float] = {}
        # Hosts whose board was read (or found unreadable) since they were last forgotten.
        self._settled: set[str] = set()

    def due(self, host: str, now: float) -> bool:
        """Whether ``host`` should be asked now (marks it asked when it is)."""
        with self._lock:
            if now - self._asked.get(host, -1e9) < self.every_s:
                return False
            self._asked[host] = now
            return True

    def poll(self, session: Any, host: str, demand: list[dict[str, Any]]) -> None:
        """Publish ``demand`` on ``host`` and read its board (on a worker thread)."""
        try:
            board = labboard.read(session, demand)
        except Exception as exc:  # an old or broken host: its board stays unknown
            log.info("%s: lab board not read: %s", host, exc)
            with self._lock:
                self._settled.add(host)
            return
        with self._lock:
            self._boards[host] = (board, time.monotonic())
            self._settled.add(host)

    def settled(self, host: str) -> bool:
        """Whether ``host``'s board was asked about and answered (or failed) once: until
        then nothing is placed there, so a reservation is never learnt of too late."""
        with self._lock:
            return host in self._settled

    def forget(self, host: str) -> None:
        with self._lock:
            self._boards.pop(host, None)
            self._asked.pop(host, None)
            self._settled.discard(host)

    def boards(self, now: float | None = None) -> dict[str, Board]:
        now = time.monotonic() if now is None else now
        with self._lock:
            return {h: b for h, (b, at) in self._boards.items() if now - at < self.stale_s}

    def reserved(self, views: Iterable[HostView], now: float | None = None
                 ) -> dict[GpuKey, str]:
        """Every reserved GPU of the lab, by (host, index), with its sentence."""
        return reserved_gpus(views, self.boards(now))

    def state(self, views: Iterable[HostView], active: Mapping[str, int],
              now: float | None = None) -> LabState:
        return state_of(views, self.boards(now), active)


def reserved_gpus(views: Iterable[HostView], boards: Mapping[str, Board]
                  ) -> dict[GpuKey, str]:
    """The reservations on ``boards`` that are still in force, by (host, GPU index) of
    the hosts' ``views``, each with its sentence."""
    wall = time.time()
    found: dict[GpuKey, str] = {}
    for view in views:
        board = boards.get(view.name)
        if board is None or not board.reservations:
            continue
        index = _indices(view)
        for item in board.reservations:
            if item.until > wall and item.gpu_uuid in index:
                found[(view.name, index[item.gpu_uuid])] = reservation_text(item)
    return found


def state_of(views: Iterable[HostView], boards: Mapping[str, Board],
             active: Mapping[str, int] | None = None) -> LabState:
    """The lab-wide fair-share view of the hosts that have both a board and a sample."""
    counts = {v.name: len(v.sample.gpus) for v in views
              if v.sample is not None and v.name in boards}
    me = {h: b.me for h, b in boards.items() if b.me}
    return lab_state({h: b for h, b in boards.items() if h in counts}, counts, me,
                     active)


def _indices(view: HostView) -> dict[str, int]:
    found: dict[str, int] = {}
    if view.hello is not None:
        found.update({g.uuid: g.index for g in view.hello.gpus})
    if view.sample is not None:
        found.update({r.uuid: r.index for r in view.sample.gpus if r.uuid})
    return found
