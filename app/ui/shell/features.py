"""Puts the window's features together: runs table, run and compare windows, drop-to-submit,
notifications and tray, theme, remembered layout, and files handed over by a second call.

Each feature installs itself through its own ``install_*`` function; this module only
decides the order and how they reach each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.ui.common.context import AppContext
from app.ui.compare.window import open_compare_window
from app.ui.lab.page import install_lab_page
from app.ui.notify.notifications import Notifier, install_notifications
from app.ui.run_window.window import open_run_window
from app.ui.runs.page import RunsPage, install_runs_page
from app.ui.shell.main_window import MainWindow
from app.ui.shell.theme import ThemeManager, install_theme
from app.ui.shell.window_state import remember
from app.ui.submit.dialog import open_submit_dialog
from app.ui.submit.drop_submit import DropSubmitter, install_drop_submit

log = logging.getLogger(__name__)

@dataclass(slots=True)
class Features:
    runs: RunsPage
    drops: DropSubmitter
    notifier: Notifier
    theme: ThemeManager

    def close(self) -> None:
        """Stop the features' workers (closing the window does this too)."""
        self.notifier.close()
        self.runs.stop()
        self.theme.close()

    def queue_files(self, argv: list[str]) -> None:
        """Files given on a command line (``labdeck train.py``, or a second call handing
        its arguments over): the submit dialog, pre-filled, as if they had been dropped."""
        files = [Path(a) for a in argv if not a.startswith("-")]
        if files:
            log.info("%d file(s) for the submit dialog", len(files))
            self.drops.open_dialog(files)


def install_features(window: MainWindow, ctx: AppContext) -> Features:
    def open_run(run_id: str) -> None:
        open_run_window(run_id, ctx.run_context())

    def open_runs(run_ids: list[str]) -> None:
        if len(run_ids) == 1:
            open_run(run_ids[0])
        elif run_ids:
            open_compare_window(run_ids, ctx)

    def clone_and_edit(spec: dict[str, Any]) -> Any:
        return open_submit_dialog(window, ctx, spec)

    theme = install_theme(window, ctx)
    runs = install_runs_page(window, ctx, open_runs=open_runs, submit_dialog=clone_and_edit)
    install_lab_page(window, ctx)  # owned by the window's tabs
    if ctx.services is not None:
        # Tiles, counts and the status bar: the scheduler's rule with the lab's reservations.
        window.cluster_view.set_reserved_source(ctx.services.dispatcher.reserved_now)
    drops = install_drop_submit(window, ctx)
    notifier = install_notifications(window, ctx, open_run)
    # After every feature added its docks and splitters, so their layout is restored too.
    remember(window, "main-window")
    return Features(runs=runs, drops=drops, notifier=notifier, theme=theme)
