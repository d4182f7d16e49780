"""``labdeck logs RUN [-f]`` and ``labdeck metrics RUN [--json | --csv]``: a run's stored
console and curves from a shell.

``logs`` writes the stored console byte for byte to stdout (non-UTF-8 output stays as
it was, escape sequences too: that is the run's own terminal output, by design); with
``--safe`` it passes it through :class:`~app.core.safetext.ConsoleFilter` instead. With
``-f`` it also follows the run: it connects to the run's host, tails the run's files into
the store (like the window does) and prints new output until the run has ended and its
output is all in. ``metrics`` prints every stored point of every series (series, step,
wall time, value), series by name, points in the order they arrived: the table with local
times for people, the CSV and JSON with seconds since the epoch for programs. Series
names come from the run, so the table and CSV show them terminal-safe and formula-guarded.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from app.cli.common import say, warn
from app.cli.runs_cmd import find_run
from app.core.events import Event, PointsStored
from app.core.queue.runs import Run, RunState
from app.core.safetext import ConsoleFilter, csv_text, terminal_safe

# The store (sqlite_utils, numpy) is imported by the commands that read it: ``labdeck
# --help`` builds these parsers and must not load it.
if TYPE_CHECKING:
    from app.core.lab import Lab
    from app.core.metrics.metricstore import MetricStore
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

PAGE = 1024 * 1024
# How often ``logs -f`` asks the host whether the run has ended.
STATUS_EVERY_S = 2.0


def add_parser(commands: Any) -> None:
    logs = commands.add_parser(
        "logs", help="print a run's console, raw (-f: follow it while it runs; --safe)",
        description="Print the console output Labdeck stored for a run, exactly as the run "
        "wrote it: the raw bytes, which may contain terminal escape sequences (colours, but "
        "also ones that retitle, clear or recolour your terminal). --safe strips them and "
        "shows other control characters as visible escapes. With -f, connect to the run's "
        "host and keep printing new output until the run ends (Ctrl-C stops following; "
        "the run goes on).",
    )
    logs.add_argument("run_id", metavar="RUN", help="a run id (or a unique start of one)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow while it runs")
    logs.add_argument(
        "--safe", action="store_true",
        help="print text that cannot act on the terminal: escape sequences removed, other "
        "control characters and non-UTF-8 bytes as visible escapes (\\x1b), each line as "
        "the terminal would leave it (a progress bar's last \\r redraw, shown once its "
        "line ends), as the window's console shows it",
    )
    logs.set_defaults(run=_logs)

    metrics = commands.add_parser(
        "metrics", help="print every stored metric point of a run",
        description="Print every stored point of a run: series, step, wall time and "
        "value; tab-separated unless --json or --csv. The table shows the time as local "
        "time (YYYY-MM-DD HH:MM:SS.mmm); --csv and --json give it as seconds since the "
        "epoch. Values are exact (nan, inf and -inf as such); a missing step is empty "
        "(null in JSON). "
        "Series names come from the run: in the table and the CSV, control characters "
        "show as escapes (\\x1b) and a name a spreadsheet would take for a formula "
        "(starting with =, +, -, @) gets a leading '; --json has them exact.",
    )
    metrics.add_argument("run_id", metavar="RUN", help="a run id (or a unique start of one)")
    form = metrics.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON document")
    form.add_argument("--csv", action="store_true", help="CSV with a header line")
    metrics.set_defaults(run=_metrics)


# -- logs ------------------------------------------------------------------------------
class _Console:
    """Where ``logs`` writes: stdout as raw bytes, or through a ConsoleFilter (--safe)."""

    def __init__(self, out: IO[bytes], safe: bool) -> None:
        self._out = out
        self._filter = ConsoleFilter() if safe else None

    def write(self, data: bytes) -> None:
        self._out.write(data if self._filter is None else self._filter.feed(data).encode())

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        if self._filter is not None:
            self._out.write(self._filter.finish().encode())
        self._out.flush()


def _print_log(metrics: MetricStore, key: str, pos: int, out: _Console) -> int:
    """Write the stored console from ``pos`` on; returns the new position."""
    while True:
        data = metrics.log_bytes(key, pos, pos + PAGE)
        if not data:
            out.flush()
            return pos
        out.write(data)
        pos += len(data)


def _logs(args: argparse.Namespace) -> int:
    from app.core.metrics.metricstore import MetricStore
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    out = _Console(sys.stdout.buffer, args.safe)
    with Store.open() as store:
        run = find_run(RunStore(store), args.run_id)
        metrics = MetricStore(store)
        key = run.host_run_id
        try:
            pos = _print_log(metrics, key, 0, out)
            if not args.follow:
                if pos == 0:
                    warn(_nothing_yet(run))
                return 0
            return _follow(store, run, pos, out)
        finally:
            out.finish()  # --safe holds an unterminated last line until here


def _nothing_yet(run: Run) -> str:
    if run.state in (RunState.QUEUED, RunState.LAUNCHING):
        return f"run {run.id} is {run.state}: no output yet"
    return f"no console output stored for run {run.id}"


def _follow(store: Store, run: Run, pos: int, out: _Console) -> int:
    from app.core.lab import Lab
    from app.core.queue.runstore import RunStore

    runs = RunStore(store)
    while run.host is None:
        if run.state.finished:
            return 0
        warn(f"run {run.id} is {run.state}; waiting for it to start "
             "(runs start while the window or labdeck serve is running)")
        while run.host is None and not run.state.finished:
            time.sleep(0.5)
            run = runs.get(run.id) or run
    host = next((h for h in store.hosts() if h.name == run.host), None)
    if host is None:
        warn(f"run {run.id}'s host {run.host} is no longer known; showing what is stored")
        return 0
    with Lab.open(store, hosts=[host], ingest_only={run.id}) as lab:
        # Only this run's output is fetched; launching is left to the window or serve.
        lab.start(dispatch=False)
        return _tail(lab, run, pos, out)


def _tail(lab: Lab, run: Run, pos: int, out: _Console) -> int:
    key = run.host_run_id
    ingestor = lab.ingestor
    news = threading.Event()

    def on_stored(event: Event) -> None:
        if isinstance(event, PointsStored) and event.run_key == key:
            news.set()

    lab.bus.subscribe(on_stored, (PointsStored,))
    ended = run.state.finished
    if ended:  # drain what no Labdeck fetched yet, then stop
        ingestor.assume_finished(key)
    next_status = 0.0
    while True:
        news.wait(0.5)
        news.clear()
        pos = _print_log(ingestor.metricstore, key, pos, out)
        if not ended and time.monotonic() >= next_status:
            next_status = time.monotonic() + STATUS_EVERY_S
            ended = _ended(lab.runstore, lab.monitor, run.id, key)
            if ended:
                ingestor.assume_finished(key)
        if ended and ingestor.drained(key):
            ingestor.stop()
            _print_log(ingestor.metricstore, key, pos, out)
            return 0


def _ended(runs: RunStore, monitor: Any, run_id: str, key: str) -> bool:
    """Has the run ended? The store says so (a dispatcher runs), or its host does."""
    from ssh_backend import runs as host_runs

    run = runs.get(run_id)
    if run is None or run.state.finished or run.host_run_id != key:
        return True
    session = monitor.session(run.host) if run.host else None
    if session is None:
        return False
    try:
        status = host_runs.reconcile(session, [key]).get(key)
    except Exception:  # not connected now, a slow host: ask again later
        return False
    return status is not None and status.kind in ("finished", "failed", "lost")


# -- metrics ---------------------------------------------------------------------------
def _number(value: float) -> str:
    return repr(float(value))


def _json_number(value: float) -> Any:
    # JSON has no NaN or infinity: they travel as strings, as on the wire.
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _metrics(args: argparse.Namespace) -> int:
    from app.core.metrics.metricstore import MetricStore
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    with Store.open() as store:
        run = find_run(RunStore(store), args.run_id)
        metrics = MetricStore(store)
        key = run.host_run_id
        names = [info.name for info in metrics.series(key)]
        out = sys.stdout
        if args.json:
            _write_json(out, run.id, key, metrics, names)
        else:
            _write_rows(out, key, metrics, names, as_csv=args.csv)
        out.flush()
        if not names:
            warn(f"no metrics stored for run {run.id}")
    return 0


def _write_rows(out: IO[str], key: str, metrics: MetricStore, names: list[str], *,
                as_csv: bool) -> None:
    """The tab-separated table (for people: local times) or the CSV (for programs:
    seconds since the epoch, exact)."""
    writer = csv.writer(out, lineterminator="\n") if as_csv else None
    if writer is not None:
        writer.writerow(["series", "step", "wall_time", "value"])
    else:
        say("\t".join(["series", "step", "time", "value"]))
    for name in names:
        # The run chose the name: it reaches a terminal (both forms print to stdout) and
        # perhaps a spreadsheet (both are tables it imports). The numbers are Labdeck's
        # own and stay numbers.
        cell = csv_text(terminal_safe(name))
        pts = metrics.points(key, name)
        for step, wall, value in zip(_steps(pts.step), pts.wall.tolist(), pts.value.tolist(),
                                     strict=True):
            when = _number(wall) if writer is not None else _local_time(wall)
            row = [cell, "" if step is None else str(step), when, _number(value)]
            if writer is not None:
                writer.writerow(row)
            else:
                out.write("\t".join(row) + "\n")


def _local_time(wall: float) -> str:
    """``2026-12-07 14:03:12.250``: the clock time a point was logged, in local time.

    Training scripts stamp their log lines with the clock time (Python logging's
    asctime is this form), and ``labdeck show`` gives the run's start and end the same
    way, so a point can be matched against the run's console and against what else
    happened on the host then. Time since the start would be ambiguous for a retried run (which
    attempt's start?) and across a resumed job. Milliseconds, because a fast loop logs
    several steps a second. A time no clock can show stays the raw number."""
    try:
        stamp = datetime.datetime.fromtimestamp(wall)
    except (ValueError, OverflowError, OSError):
        return _number(wall)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


def _steps(step: Any) -> list[int | None]:
    """Steps as Python ints, None where a point has none (NaN in a float array)."""
    if step.dtype.kind == "f":
        return [None if math.isnan(s) else int(s) for s in step.tolist()]
    return [int(s) for s in step.tolist()]


def _write_json(out: IO[str], run_id: str, key: str, metrics: MetricStore,
                names: list[str]) -> None:
    # Streamed point by point: a million points never become one string in memory.
    head = {"run_id": run_id, "attempt_id": key, "params": metrics.params(key)}
    out.write(json.dumps(head)[:-1] + ', "points": [')
    first = True
    for name in names:
        pts = metrics.points(key, name)
        for step, wall, value in zip(_steps(pts.step), pts.wall.tolist(), pts.value.tolist(),
                                     strict=True):
            point = {"series": name, "step": step, "wall_time": _json_number(wall),
                     "value": _json_number(value)}
            out.write(("\n" if first else ",\n") + json.dumps(point))
            first = False
    out.write("\n]}\n")
