"""The hosts' lab boards as the CLI reads them: once, from every reachable host, saying
which host was left out and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli.common import warn

if TYPE_CHECKING:
    from app.core.hosts.cluster import ClusterMonitor
    from ssh_backend.labboard import Board


def read_boards(monitor: ClusterMonitor, quiet: bool = False) -> dict[str, Board]:
    """The lab board of every reachable host; the others are left out (said unless
    ``quiet``: an old or broken host's wrapper still honours its reservations)."""
    from ssh_backend import labboard

    boards = {}
    for view in monitor.hosts():
        session = monitor.session(view.name)
        if view.sample is None or session is None:
            if not quiet:
                warn(f"{view.name}: not reachable, left out")
            continue
        try:
            boards[view.name] = labboard.read(session)
        except Exception as exc:
            if not quiet:
                warn(f"{view.name}: its lab board could not be read: {exc}")
    return boards
