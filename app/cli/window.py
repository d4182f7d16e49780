"""``labdeck`` without a command: the window over this user's ``Lab`` (queued runs start
while the window is open).

Qt is imported here only, and only when this runs. The Lab's store is opened (and
migrated) before the event loop starts; afterwards the window's host actions write it
from the window's worker threads, never from the GUI thread.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import UsageError, check_display, say

if TYPE_CHECKING:
    # Imported where used: ``build_parser`` loads this module for every ``labdeck``.
    from ssh_backend.hostkeys import TrustDecider

log = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "open",
        help="open the window and queue scripts, folders or job files (the submit dialog)",
        description="Open Labdeck with the submit dialog pre-filled for FILE… (what the "
        "file manager's 'Open with Labdeck' does). A running Labdeck window takes them "
        "over instead of a second window opening.",
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE")
    parser.set_defaults(run=_run_open)


def _run_open(args: argparse.Namespace) -> int:
    check_display()
    missing = [str(f) for f in args.files if not f.exists()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    return open_window([str(f.resolve()) for f in args.files])


def open_window(files: list[str] | None = None) -> int:
    """The window over the stored hosts, with the dispatcher and the ingestor running
    while it is open; ``files`` open the submit dialog. If a Labdeck window is already
    open on this home, the files go to it and this call returns at once."""
    from app.core.lab import Lab
    from app.ui.shell.features import Features
    from app.ui.shell.main import run_gui
    from app.ui.shell.main_window import MainWindow
    from app.ui.shell.single_instance import SingleInstance

    files = files or []
    instance = SingleInstance()
    if instance.try_forward(files):
        say("Labdeck is already open: handed over to its window")
        return 0

    def open_lab(trust: TrustDecider) -> Lab:
        # The queue is dispatched while the window is open (or by `labdeck serve`,
        # whichever holds the queue lock); runs go on on their hosts after it closes.
        lab = Lab.open(trust=trust)
        log.info("opening the window with %d stored hosts", len(lab.monitor.names()))
        return lab

    def on_window(window: MainWindow, features: Features) -> None:
        if instance.listen():
            instance.received.connect(features.queue_files)
            log.info("taking files from later calls of labdeck")
        features.queue_files(files)

    return run_gui(sys.argv[:1], open_lab, on_window)
