"""The lab board of one host as the app reads it (``agent/board.py`` writes it there):
reservations, waiting demand, GPU-hours used and held GPU leases of every lab member,
each named by the kernel's word on that host. Everything here is data from the host:
checked, bounded, and never trusted beyond what it says about who owns what.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ssh_backend.events import Session
from ssh_backend.runs import CONTROL_TIMEOUT_S, RunControlError, expect_reply

MAX_ITEMS = 1024
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class Reservation:
    gpu_uuid: str
    user: str
    until: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Demand:
    """``runs`` runs of ``gpus`` GPUs each wait for ``user`` since ``since``."""

    user: str
    gpus: int
    runs: int
    since: float
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """GPU-hours ``user``'s runs used on the host over the last day and week."""

    user: str
    day_gpu_h: float
    week_gpu_h: float


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    gpu_uuid: str
    user: str | None  # None: a holder that could not be asked (it does not answer)
    run_id: str | None
    since: float | None


@dataclass(frozen=True, slots=True)
class Board:
    reservations: tuple[Reservation, ...] = ()
    demand: tuple[Demand, ...] = ()
    leases: tuple[LeaseHolder, ...] = ()
    # The lab policy's fair-share weights (user → weight; "default" for the rest).
    shares: dict[str, float] = field(default_factory=dict)
    policy_problem: str | None = None
    # The Unix user this Labdeck is on that host (the kernel's word for the SSH login).
    me: str | None = None
    usage: tuple[Usage, ...] = ()
    # The lab policy's cap on GPUs this user's runs may hold at once on the host (None:
    # no cap); the host's wrapper enforces it at lease time, the scheduler plans by it.
    my_quota: int | None = None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:MAX_TEXT]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and abs(value) < 1e15 else None


def _int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _items(obj: Any, key: str) -> list[dict[str, Any]]:
    items = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return []
    return [item for item in items[:MAX_ITEMS] if isinstance(item, dict)]


def decode(reply_board: Any, policy: Any = None) -> Board:
    """A ``Board`` from runctl's answer; whatever is malformed is left out."""
    reservations = []
    for item in _items(reply_board, "reservations"):
        uuid, user, until = _text(item.get("gpu_uuid")), _text(item.get("user")), _num(
            item.get("until"))
        if uuid and user and until is not None:
            reservations.append(Reservation(uuid, user, until, _text(item.get("note")) or ""))
    demand = []
    for item in _items(reply_board, "demand"):
        user, since = _text(item.get("user")), _num(item.get("since"))
        gpus, runs = _int(item.get("gpus"), 1, 1024), _int(item.get("runs"), 1, 1_000_000)
        priority = _int(item.get("priority", 0), -1_000_000, 1_000_000)
        if user and since is not None and gpus and runs and priority is not None:
            demand.append(Demand(user, gpus, runs, since, priority))
    usage = []
    for item in _items(reply_board, "usage"):
        user, day, week = _text(item.get("user")), _num(item.get("day_gpu_h")), _num(
            item.get("week_gpu_h"))
        if user and day is not None and week is not None and 0 <= day <= week:
            usage.append(Usage(user, day, week))
    leases = []
    for item in _items(reply_board, "leases"):
        uuid = _text(item.get("gpu_uuid"))
        if uuid:
            leases.append(LeaseHolder(uuid, _text(item.get("user")), _text(item.get("run_id")),
                                      _num(item.get("since"))))
    shares: dict[str, float] = {}
    problem = None
    if isinstance(policy, dict):
        raw = policy.get("shares")
        if isinstance(raw, dict):
            for name, weight in list(raw.items())[:MAX_ITEMS]:
                value = _num(weight)
                if isinstance(name, str) and value is not None and value > 0:
                    shares[name[:MAX_TEXT]] = value
        problem = _text(policy.get("problem"))
    me = _text(reply_board.get("me")) if isinstance(reply_board, dict) else None
    return Board(tuple(reservations), tuple(demand), tuple(leases), shares, problem, me,
                 tuple(usage), _quota_of(policy, me))


def _quota_of(policy: Any, me: str | None) -> int | None:
    """This user's GPU quota on the host from its policy (a user's own, else the lab's)."""
    if not isinstance(policy, dict):
        return None
    own = policy.get("user_max_gpus")
    if me is not None and isinstance(own, dict) and me in own:
        return _int(own[me], 0, 1_000_000)
    return _int(policy.get("max_gpus_per_user"), 0, 1_000_000)


def read(session: Session, demand: list[dict[str, Any]] | None = None) -> Board:
    """The host's lab board; with ``demand``, this user's waiting demand is published
    (renewed) in the same call."""
    request: dict[str, Any] = {"op": "board"}
    if demand is not None:
        request["demand"] = demand
    reply = session.control(request, timeout=CONTROL_TIMEOUT_S)
    board = expect_reply(session, reply, "board")
    if not isinstance(board, dict):
        raise RunControlError(f"run control on {session.name} sent an unreadable lab board")
    return decode(board, reply.get("policy"))


def reserve(session: Session, gpu_uuid: str, until: float, note: str = "") -> None:
    """Reserve a GPU of the host for this user until ``until`` (epoch seconds);
    LaunchRefused (with the reason) when a labmate holds it or the lab policy forbids."""
    reply = session.control({"op": "reserve", "gpu_uuid": gpu_uuid, "until": float(until),
                             "note": note})
    expect_reply(session, reply, "reservations")


def unreserve(session: Session, gpu_uuid: str) -> None:
    """Lift this user's own reservation of a GPU (a labmate's stays)."""
    reply = session.control({"op": "unreserve", "gpu_uuid": gpu_uuid})
    expect_reply(session, reply, "reservations")
