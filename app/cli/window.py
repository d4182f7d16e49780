"""``labdeck`` without a command: the window, wired to the store, the real sessions and
the dispatcher (queued runs start while the window is open).

Qt is imported here only, and only when this runs. The store is opened (and migrated)
before the event loop starts; afterwards the window's host actions write it from the
window's worker threads, never from the GUI thread.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import UsageError, check_display, say
from ssh_backend.hostspec import HostSpec

if TYPE_CHECKING:
    # Imported where used: ``build_parser`` loads this module for every ``labdeck``.
    from app.core.cluster import ClusterMonitor
    from app.core.store import Store
    from ssh_backend.hostkeys import TrustDecider

log = logging.getLogger(__name__)


class _Persisting:
    """The window's add/import actions: save the host, then start monitoring it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.monitor: ClusterMonitor | None = None

    def add_host(self, spec: HostSpec) -> None:
        from app.core import hosts
        from app.core.store import StoreError

        hosts.validate_host_name(spec.name)
        try:
            self.store.add_host(spec)
        except StoreError as exc:
            raise ValueError(str(exc)) from None  # the window shows ValueErrors as they are
        if self.monitor is not None:
            self.monitor.add_host(spec)

    def import_hosts(self, aliases: list[str]) -> None:
        problems: list[str] = []
        for alias in aliases:
            try:
                self.add_host(HostSpec(name=alias, ssh_alias=alias))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))


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
    from app.core.lab import LabServices, build_services
    from app.core.metricstore import MetricStore
    from app.core.runstore import RunStore
    from app.core.store import Store
    from app.ui.context import AppContext
    from app.ui.main import run_gui
    from app.ui.main_window import HostActions, MainWindow
    from app.ui.shell import install_features
    from app.ui.single_instance import SingleInstance

    files = files or []
    instance = SingleInstance()
    if instance.try_forward(files):
        say("Labdeck is already open: handed over to its window")
        return 0
    with Store.open() as store:
        persisting = _Persisting(store)
        services: list[LabServices] = []

        def monitor_factory(trust: TrustDecider) -> ClusterMonitor:
            lab = build_services(store, trust=trust)
            # The queue is dispatched while the window is open (or by `labdeck serve`,
            # whichever holds the queue lock); runs go on on their hosts after it closes.
            # Consoles and curves are tailed into the store meanwhile. The window starts
            # the monitor itself once it can show host-key prompts.
            lab.ingestor.start()
            lab.dispatcher.start()
            services.append(lab)
            persisting.monitor = lab.monitor
            return lab.monitor

        def on_window(window: MainWindow) -> None:
            ctx = AppContext(store, RunStore(store), MetricStore(store),
                             services[0] if services else None)
            features = install_features(window, ctx)
            if instance.listen():
                instance.received.connect(features.queue_files)
            features.queue_files(files)

        actions = HostActions(
            add_host=persisting.add_host, import_hosts=persisting.import_hosts
        )
        log.info("opening the window with %d stored hosts", len(store.hosts()))
        try:
            return run_gui(sys.argv[:1], monitor_factory=monitor_factory, actions=actions,
                           on_window=on_window)
        finally:
            # run_gui stopped the monitor; stop what was started beside it.
            for lab in services:
                lab.dispatcher.stop()
                lab.ingestor.stop()
