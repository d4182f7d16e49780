"""``labdeck gpus``: one snapshot of every GPU of every host, as a table or JSON.

Connects to every stored host at once, waits until each has sent a sample or settled in a
state that will not produce one soon (or the timeout passes), prints, disconnects.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from app.cli.common import say, table, warn
from app.core.safetext import terminal_safe
from ssh_backend.states import HostState

if TYPE_CHECKING:
    from app.core.hosts.cluster import HostView
    from ssh_backend.protocol import GpuReading

DEFAULT_TIMEOUT_S = 15.0
# States in which a sample may still arrive shortly: keep waiting for those hosts.
_WAITING = {HostState.CONNECTING, HostState.ONLINE, HostState.STALE}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "gpus",
        help="show every GPU of every host once (like gpustat across the lab)",
        description="Connect to every host, take one reading of each GPU, print it. "
        "Exit 0 if every host answered, 1 if some did not.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"give up on hosts that have not answered after S seconds "
        f"(default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # The SSH stack loads only for commands that connect: the others start faster.
    from app.core.lab import Lab
    from app.core.store import Store

    with Store.open() as store:
        specs = store.hosts()
        if not specs:
            if args.json:
                say(json.dumps({"hosts": []}))
            warn("no hosts yet; add one with: labdeck hosts add NAME --ssh user@host")
            return 0
        with Lab.open(store, hosts=specs) as lab:
            monitor = lab.monitor
            lab.start(dispatch=False, ingest=False)
            monitor.wait_until(lambda views: all(_settled(v) for v in views), args.timeout)
            views = monitor.hosts()
            reserved = lab_reservations(monitor, views)
    if args.json:
        say(json.dumps({"hosts": [host_json(v, reserved) for v in views]}, indent=2))
    else:
        say(render_table(views, reserved))
    return 0 if all(v.sample is not None for v in views) else 1


def _settled(view: HostView) -> bool:
    if view.sample is not None:
        return True
    if view.hello is not None and view.hello.backend == "none":
        return True  # connected, and it has no GPU to sample
    return view.state not in _WAITING


def host_detail(view: HostView) -> str:
    """The host's detail sentence, plus what to do where the CLI is the way to do it."""
    detail = view.detail
    if view.state == HostState.HOSTKEY_UNKNOWN:
        hint = f"check and accept its key with: labdeck hosts trust {view.name}"
        detail = f"{detail}; {hint}" if detail else f"host key not trusted yet; {hint}"
    elif view.state in _WAITING and view.sample is None:
        detail = detail or "no reading arrived before the timeout"
    return detail


def lab_reservations(monitor: Any, views: list[HostView]) -> dict[tuple[str, int], str]:
    """(host, GPU index) → 'reserved by … until …' from the hosts' lab boards (a host
    whose board cannot be read shows none; its wrapper still honours them)."""
    from app.cli.boards import read_boards
    from app.core.queue.labwatch import reserved_gpus

    return reserved_gpus(views, read_boards(monitor, quiet=True))


def host_json(view: HostView, reserved: dict[tuple[str, int], str] | None = None
              ) -> dict[str, Any]:
    names = {g.index: g.name for g in view.hello.gpus} if view.hello else {}
    gpus = view.sample.gpus if view.sample else ()
    reserved = reserved or {}
    return {
        "name": view.name,
        "state": str(view.state),
        "detail": host_detail(view),
        "simulated": view.simulated,
        "gpus": [_gpu_json(g, names.get(g.index), reserved.get((view.name, g.index)))
                 for g in gpus],
    }


def _gpu_json(gpu: GpuReading, name: str | None, reserved: str | None = None
              ) -> dict[str, Any]:
    return {
        "reserved": reserved,
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": name,
        "util_pct": gpu.util_pct,
        "mem_used_mib": gpu.mem_used_mib,
        "mem_total_mib": gpu.mem_total_mib,
        "temp_c": gpu.temp_c,
        "power_w": gpu.power_w,
        "power_limit_w": gpu.power_limit_w,
        "fan_pct": gpu.fan_pct,
        "processes": [
            {"pid": p.pid, "user": p.user, "command": p.command, "mem_mib": p.mem_mib}
            for p in gpu.processes
        ],
    }


def render_table(views: list[HostView],
                 reserved: dict[tuple[str, int], str] | None = None) -> str:
    header = ["HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "USERS"]
    reserved = reserved or {}
    rows: list[list[str]] = []
    notes: list[str] = []
    for view in views:
        label = f"{view.name} (simulated)" if view.simulated else view.name
        if view.sample is None:
            rows.append([label, "-", f"[{view.state.label}]", "", "", "", "", ""])
            notes.append(f"{view.name}: {view.state.label}: {host_detail(view)}")
            continue
        if not view.sample.gpus:
            rows.append([label, "-", "(no GPU)", "", "", "", "", ""])
        names = {g.index: g.name for g in view.hello.gpus} if view.hello else {}
        for gpu in view.sample.gpus:
            rows.append(
                [
                    label,
                    str(gpu.index),
                    names.get(gpu.index, "?"),
                    _num(gpu.util_pct, "%"),
                    f"{_num(gpu.mem_used_mib)} / {_num(gpu.mem_total_mib)} MiB",
                    _num(gpu.temp_c, "°C"),
                    f"{_num(gpu.power_w)} / {_num(gpu.power_limit_w)} W",
                    _users(gpu, reserved.get((view.name, gpu.index))),
                ]
            )
        if view.state not in (HostState.ONLINE, HostState.CONNECTING):
            notes.append(f"{view.name}: {view.state.label}: {host_detail(view)}")
    text = table(rows, header)
    return "\n".join([text, "", *map(terminal_safe, notes)]) if notes else text


def _num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.0f}{unit}"


def _users(gpu: GpuReading, reserved: str | None = None) -> str:
    parts = [reserved] if reserved else []
    for p in gpu.processes:
        command = terminal_safe((p.command or "?").replace("\0", " ").strip())
        command = command if len(command) <= 40 else command[:39] + "…"
        mem = f" ({p.mem_mib:.0f} MiB)" if p.mem_mib is not None else ""
        parts.append(f"{terminal_safe(p.user or '?')}:{command}{mem}")
    return ", ".join(parts) or "-"


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"timeout must be a number of seconds, not {text!r}"
        ) from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("timeout must be more than 0 and at most 3600 seconds")
    return value

