"""How big the reliability runs are: quick in the test command, full on request.

``bash installer/dev.sh reliability`` sets ``LABDECK_RELIABILITY=full``; the test command
leaves it unset and gets the quick variant of every check (same code, fewer runs and
shorter faults), so the whole suite stays well inside its time budget.
"""

from __future__ import annotations

import os

FULL = os.environ.get("LABDECK_RELIABILITY", "quick") == "full"


def pick(quick: int, full: int) -> int:
    """``full`` in the full reliability run, ``quick`` otherwise."""
    return full if FULL else quick
