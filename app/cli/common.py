"""What every ``labdeck`` subcommand shares: the user-error type and output helpers."""

from __future__ import annotations

import os
import sys


class UsageError(Exception):
    """The user asked for something that cannot be done; ``str()`` says what to do."""


def say(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(f"labdeck: {text}", file=sys.stderr, flush=True)


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns two spaces apart, header first; cells made printable."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def printable(text: str) -> str:
    """Text from a host with control characters replaced: no terminal escapes get through."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


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
