"""``labdeck lab / why / reserve / unreserve``: the lab as the hosts' boards show it.

Reservations live on the hosts (every lab member's Labdeck honours them), so these
commands connect: to one host for a reservation, to every host for the lab view and for
why a run waits.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from app.cli.boards import read_boards
from app.cli.common import UsageError, duration_text, run_time_text, say, table, warn
from app.core.queue.runs import RunState

# The store and the SSH stack are imported where a command uses them, never at the top:
# ``labdeck --help`` builds these parsers and must not load them.
if TYPE_CHECKING:
    from app.core.hosts.cluster import ClusterMonitor, HostView

CONNECT_TIMEOUT_S = 15.0
DEFAULT_FOR = "4h"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def add_parser(commands: Any) -> None:
    lab = commands.add_parser(
        "lab", help="the lab at a glance: who holds and waits for GPUs, reservations",
        description="Read the lab board of every host: GPUs each user holds, their waiting "
        "demand and fair share, reservations, and GPUs held but idle.")
    lab.add_argument("--json", action="store_true", help="print JSON instead of tables")
    lab.set_defaults(run=_lab)

    why = commands.add_parser("why", help="why a run waits (or how it ended)")
    why.add_argument("run_id", metavar="RUN")
    why.set_defaults(run=_why)

    reserve = commands.add_parser(
        "reserve", help="reserve a GPU on its host: no Labdeck of the lab starts runs on it",
        description="Reserve a GPU for work by hand. The reservation is kept on the host, "
        "so every lab member's Labdeck honours it; it ends by itself.")
    reserve.add_argument("host", metavar="HOST")
    reserve.add_argument("gpu", type=int, metavar="GPU", help="the GPU's index")
    until = reserve.add_mutually_exclusive_group()
    until.add_argument("--for", dest="duration", metavar="DURATION",
                       help=f"how long: 90m, 4h, 2d (default {DEFAULT_FOR})")
    until.add_argument("--until", metavar="TIME",
                       help="until when: HH:MM (today, or tomorrow if past) or "
                            "YYYY-MM-DD HH:MM")
    reserve.add_argument("--note", default="", help="why (shown to the whole lab)")
    reserve.set_defaults(run=_reserve)

    unreserve = commands.add_parser("unreserve", help="lift your own reservation of a GPU")
    unreserve.add_argument("host", metavar="HOST")
    unreserve.add_argument("gpu", type=int, metavar="GPU")
    unreserve.set_defaults(run=_unreserve)


# -- connecting ------------------------------------------------------------------------
@contextmanager
def _connected(names: list[str] | None = None) -> Iterator[ClusterMonitor]:
    from app.core.lab import Lab
    from app.core.store import Store
    from ssh_backend.states import HostState

    with Store.open() as store:
        specs = [h for h in store.hosts() if names is None or h.name in names]
        if names is not None and not specs:
            raise UsageError(f"no host named '{names[0]}'; see the list with: labdeck hosts ls")
        with Lab.open(store, hosts=specs) as lab:
            lab.start(dispatch=False, ingest=False)
            lab.monitor.wait_until(lambda views: all(
                v.sample is not None or v.state not in (HostState.CONNECTING, HostState.ONLINE)
                for v in views), CONNECT_TIMEOUT_S)
            yield lab.monitor


def _online_view(monitor: ClusterMonitor, name: str) -> HostView:
    from app.cli.gpus_cmd import host_detail

    view = monitor.host(name)
    if view is None or view.sample is None or monitor.session(name) is None:
        detail = host_detail(view) if view is not None else "unknown host"
        raise UsageError(f"{name} is not reachable now ({detail})")
    return view


# -- reserve ---------------------------------------------------------------------------
def parse_until(duration: str | None, until: str | None, now: float | None = None) -> float:
    """Epoch seconds from ``--for`` or ``--until`` (UsageError saying the form wanted)."""
    now = time.time() if now is None else now
    if until is not None:
        for form in ("%Y-%m-%d %H:%M", "%H:%M"):
            try:
                parsed = time.strptime(until.strip(), form)
            except ValueError:
                continue
            if form == "%H:%M":
                today = time.localtime(now)
                stamp = time.mktime((today.tm_year, today.tm_mon, today.tm_mday,
                                     parsed.tm_hour, parsed.tm_min, 0, 0, 0, -1))
                return stamp + 86400 if stamp <= now else stamp
            stamp = time.mktime(parsed)
            if stamp <= now:
                raise UsageError(f"--until {until} is in the past")
            return stamp
        raise UsageError(f"--until wants HH:MM or YYYY-MM-DD HH:MM, not {until!r}")
    match = _DURATION.match(duration or DEFAULT_FOR)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--for wants a duration like 90m, 4h or 2d, not {duration!r}")
    unit = {"": 3600, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return now + float(match.group(1)) * unit


def _gpu_uuid(view: HostView, index: int) -> str:
    assert view.sample is not None
    for reading in view.sample.gpus:
        if reading.index == index and reading.uuid:
            return reading.uuid
    known = ", ".join(str(r.index) for r in view.sample.gpus) or "none"
    raise UsageError(f"{view.name} has no GPU {index} (its GPUs: {known})")


def _reserve(args: argparse.Namespace) -> int:
    from ssh_backend import labboard
    from ssh_backend.runs import LaunchRefused

    until = parse_until(args.duration, args.until)
    with _connected([args.host]) as monitor:
        view = _online_view(monitor, args.host)
        uuid = _gpu_uuid(view, args.gpu)
        session = monitor.session(args.host)
        assert session is not None
        try:
            labboard.reserve(session, uuid, until, args.note)
        except LaunchRefused as exc:
            raise UsageError(str(exc)) from None
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(until))
    say(f"{args.host} GPU {args.gpu} is reserved for you until {stamp}: no Labdeck of the "
        "lab starts runs on it (lift it with: labdeck unreserve "
        f"{args.host} {args.gpu})")
    return 0


def _unreserve(args: argparse.Namespace) -> int:
    from ssh_backend import labboard
    from ssh_backend.runs import LaunchRefused

    with _connected([args.host]) as monitor:
        view = _online_view(monitor, args.host)
        uuid = _gpu_uuid(view, args.gpu)
        session = monitor.session(args.host)
        assert session is not None
        try:
            labboard.unreserve(session, uuid)
            board = labboard.read(session)
        except LaunchRefused as exc:
            raise UsageError(str(exc)) from None
    left = [r for r in board.reservations if r.gpu_uuid == uuid]
    if left:
        warn(f"{args.host} GPU {args.gpu} stays reserved by {left[0].user}: only they can "
             "lift their reservation")
        return 1
    say(f"{args.host} GPU {args.gpu} is free for queued runs again")
    return 0


# -- lab and why -------------------------------------------------------------------------
def _lab(args: argparse.Namespace) -> int:
    with _connected() as monitor:
        views = monitor.hosts()
        boards = read_boards(monitor)
    from app.core.queue.labsummary import idle_text, lab_summary, minutes_text

    found = lab_summary(views, boards)
    if args.json:
        say(json.dumps(found, indent=2))
        return 0
    now = time.time()
    rows = [[u["user"], str(u["gpus_held"]), f"{u['gpu_hours_day']:g}",
             f"{u['gpu_hours_week']:g}", str(u["gpus_wanted"]),
             "-" if u["waiting_since"] is None else minutes_text(now - u["waiting_since"]),
             f"{u['fair_share_gpus']:g}"] for u in found["users"]]
    say(table(rows, ["USER", "HOLDS", "GPU-H DAY", "GPU-H WEEK", "WAITS FOR", "WAITING",
                     "FAIR SHARE"])
        if rows else "nobody holds, has used or waits for a GPU this week")
    if found["reservations"]:
        say()
        say(table([[r["host"], r["gpu_uuid"], r["text"]] for r in found["reservations"]],
                  ["HOST", "GPU", "RESERVATION"]))
    if found["idle_holders"]:
        say()
        say(table([[i["host"], str(i["gpu"]), str(i["user"]), str(i["run"] or ""),
                    idle_text(i, found["idle_after_min"])]
                   for i in found["idle_holders"]], ["HOST", "GPU", "HELD BY", "RUN", "IDLE"]))
    return 0


def _why(args: argparse.Namespace) -> int:
    from app.cli.runs_cmd import find_run
    from app.core.queue.labwatch import reserved_gpus, state_of
    from app.core.queue.runstore import RunStore
    from app.core.queue.scheduler import explain
    from app.core.store import Store

    with Store.open() as store:
        runs = RunStore(store)
        run = find_run(runs, args.run_id)
        tags = {h.name: store.host_tags(h.name) for h in store.hosts()}
        busy = runs.busy_gpus()
        local_reserved = runs.reserved()
    if run.state is not RunState.QUEUED:
        where = f" on {run.host}" if run.host else ""
        took = run_time_text(run)
        say(f"{run.id} is {run.state}{where}" + (f" ({took})" if took else "")
            + (f": {run.reason}" if run.reason else ""))
        return 0
    with _connected() as monitor:
        views = monitor.hosts()
        boards = read_boards(monitor)
    reserved: dict[tuple[str, int], str] = dict.fromkeys(local_reserved, "")
    reserved.update(reserved_gpus(views, boards))
    lab = state_of(views, boards)
    # Since it last entered the queue (a retry starts waiting again), as the scheduler counts.
    since = run.queued_at if run.queued_at is not None else run.created_at
    waited = duration_text(time.time() - since)
    say(f"{run.id} has waited {waited}: "
        f"{explain(run, views, reserved, busy, host_tags=tags, lab=lab)}")
    if run.reason:
        say(f"last word from the dispatcher: {run.reason}")
    return 0
