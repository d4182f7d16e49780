"""What every ``labdeck`` subcommand shares: the user-error type and output helpers."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from app.core.safetext import terminal_safe

if TYPE_CHECKING:
    from app.core.queue.runs import Run


class UsageError(Exception):
    """The user asked for something that cannot be done; ``str()`` says what to do."""


def say(text: str = "") -> None:
    # Every line the CLI prints passes here: whatever a host or another user put into it,
    # no control character reaches the terminal (tables and one-line values also lose
    # their newlines where they are built).
    print(terminal_safe(text, keep="\n\t"), flush=True)


def warn(text: str) -> None:
    print("labdeck: " + terminal_safe(text, keep="\n"), file=sys.stderr, flush=True)


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns two spaces apart, header first; every cell one line of
    terminal-safe text (a newline in a host's text would break the columns)."""
    rows = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run_time_text(run: Run, now: float | None = None) -> str:
    """How long ``run`` ran (so far, while it runs); "" before it started.

    ``ls``, ``show`` and ``why`` all say it this way, in the core's words for a duration
    (the desktop notifications' "5 min 03 s", "2 h 05 min"; ``labdeck lab`` counts
    minutes the same way), so a run's time reads the same wherever it is shown."""
    if run.started_at is None:
        return ""
    end = run.ended_at if run.ended_at is not None else time.time() if now is None else now
    return duration_text(end - run.started_at)


def duration_text(seconds: float) -> str:
    """A duration for people: '45 s', '5 min 03 s', '2 h 05 min'."""
    # The core's formatter, imported here: its module loads the store, which the parser
    # path must not, and every command that prints a duration has loaded it already.
    from app.core.notify_events import format_duration

    # A host's clock a little behind ours must not make a run last "unknown duration".
    return format_duration(max(0.0, seconds))


def check_display() -> None:
    """Refuse clearly when there is no screen, instead of letting Qt abort the process."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError(
            "no display found (neither DISPLAY nor WAYLAND_DISPLAY is set): start Labdeck "
            "from a desktop session, or check the installation offscreen with "
            "'labdeck --self-test --screenshot shot.png'"
        )
