"""``labdeck serve``: the dispatcher without the window (a lab server can own a queue).

Monitors every stored host, starts queued runs on free GPUs, follows them to the end and
prints one line per run state change; details go to the log file. SIGTERM or Ctrl-C stop
it cleanly, and runs on hosts keep running: the next start reconciles them.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from app.cli.common import say, warn
from app.core.events import Event, RunChanged
from app.core.queue.runs import RunState
from app.core.safetext import terminal_safe

# The dispatcher and the store (the SSH stack, sqlite_utils) are imported when serve
# runs: ``labdeck --help`` builds this parser and must not load them.
if TYPE_CHECKING:
    from app.core.lab import Lab
    from app.core.metrics.ingest import Ingestor
    from app.core.queue.dispatcher import Dispatcher
    from app.core.store import Store

DEFAULT_WAIT_S = 60.0
# DispatchOptions().poll_s, written out so that the parser needs no dispatcher (a test
# checks that the two agree).
DEFAULT_POLL_S = 3.0
# --until-done: how long to wait for the last runs' output to be stored before exiting.
DRAIN_WAIT_S = 60.0
_UNFINISHED = (RunState.QUEUED, RunState.LAUNCHING, RunState.RUNNING)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="start queued runs on free GPUs, without the window",
        description="Dispatch this Labdeck's queue headless: start queued runs on free GPUs "
        "of the stored hosts and follow them to the end. Stop with Ctrl-C or SIGTERM; "
        "runs keep running on their hosts.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true",
                      help="reconcile and start what fits now, then exit")
    mode.add_argument("--until-done", action="store_true",
                      help="exit once no run is queued, launching or running")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="S",
                        help=f"with --once: give up after S seconds (default {DEFAULT_WAIT_S:g})")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_S, metavar="S",
                        help="seconds between checks of running runs (default %(default)g)")
    parser.set_defaults(run=run)


class _Printer:
    """One line per run state change on stdout."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._lock = threading.Lock()
        # What was printed last per run: several quick changes read back as one.
        self._last: dict[str, str] = {}

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RunChanged):
            return
        run = self._dispatcher.runstore.get(event.run_id)
        if run is None:
            return
        where = ""
        if run.host and run.state in (RunState.LAUNCHING, RunState.RUNNING):
            where = f" on {run.host}:{','.join(map(str, run.gpus))}"
        code = f" (exit code {run.exit_code})" if run.exit_code is not None else ""
        why = f": {run.reason}" if run.reason and not code else ""
        line = terminal_safe(f"{run.id} {run.name} {run.state}{where}{code}{why}")
        with self._lock:
            if self._last.get(run.id) != line:
                self._last[run.id] = line
                say(line)


def run(args: argparse.Namespace) -> int:
    from app.core.lab import Lab
    from app.core.queue.dispatcher import DispatchOptions

    if args.poll <= 0:
        warn("--poll must be more than 0 seconds")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # Closing the Lab stops it in its order: nothing new is launched, what was
        # received is stored while the sessions are still up, then the sessions close.
        with Lab.open(dispatch=DispatchOptions(poll_s=args.poll)) as lab:
            return _run_lab(lab, args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_lab(lab: Lab, args: argparse.Namespace, stop: threading.Event) -> int:
    hosts = lab.monitor.names()
    if not hosts:
        warn("no hosts yet; add one with: labdeck hosts add NAME --ssh user@host")
        return 1
    lab.bus.subscribe(_Printer(lab.dispatcher).on_event, (RunChanged,))
    # Runs' consoles and curves are tailed into the store too (labdeck logs/metrics);
    # hosts added or removed with `labdeck hosts` meanwhile are followed.
    lab.start()
    say(f"dispatching to {len(hosts)} host{'s' if len(hosts) != 1 else ''}: "
        f"{', '.join(hosts)}")
    if args.once:
        return _once(lab.dispatcher, stop, args.wait)
    _serve(lab.dispatcher, stop, lab.store, until_done=args.until_done)
    if args.until_done:
        _drain(lab.ingestor, stop)
    return 0


def _once(dispatcher: Dispatcher, stop: threading.Event, wait_s: float) -> int:
    if not dispatcher.dispatching:
        warn(dispatcher.passive_reason())
        return 1
    deadline = time.monotonic() + wait_s
    while not stop.is_set() and time.monotonic() < deadline:
        if dispatcher.wait_idle(0.2):
            return 0
    if not stop.is_set():
        warn(f"still busy after {wait_s:g} s (hosts not answering?); see the log file")
        return 1
    return 0


def _drain(ingestor: Ingestor, stop: threading.Event) -> None:
    """Every run has ended: wait until their consoles and curves are all stored, so
    ``labdeck logs`` shows them whole (the last bytes may still be on their way).

    As long as output keeps arriving this waits (a gigabyte console takes a minute or
    more); it gives up after ``DRAIN_WAIT_S`` without any progress (a host offline)."""
    deadline = time.monotonic() + DRAIN_WAIT_S
    progress = ingestor.batches_stored
    while not stop.is_set():
        if ingestor.wait_drained(0.5):
            return
        if ingestor.batches_stored != progress:
            progress = ingestor.batches_stored
            deadline = time.monotonic() + DRAIN_WAIT_S
        elif time.monotonic() > deadline:
            warn(f"some runs' output stopped arriving for {DRAIN_WAIT_S:g} s (a host "
                 "offline?); the next labdeck serve or window fetches the rest")
            return


def _serve(
    dispatcher: Dispatcher, stop: threading.Event, store: Store, *, until_done: bool
) -> None:
    said = full = ""
    while not stop.wait(0.5):
        # Runs go on on their hosts while the store is full; their changes, consoles and
        # curves are stored once there is room again (nothing is lost meanwhile).
        if store.disk_full != full:
            if store.disk_full:
                warn(f"{store.disk_full}; runs go on on their hosts and are caught up then")
            else:
                warn("the store takes writes again; catching up with the runs")
            full = store.disk_full
        reason = dispatcher.passive_reason()
        if reason != said:
            if reason:
                warn(reason)
            said = reason
        if until_done and not reason and dispatcher.runstore.count(_UNFINISHED) == 0:
            return
