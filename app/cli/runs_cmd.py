"""``labdeck submit / ls / show / cancel``: the run queue from a shell.

These only read and write the local store; ``labdeck serve`` (or the window) is what
starts queued runs and carries out cancels. A submit checks everything first (the job
file, the script, the hosts, the GPU count) and queues nothing unless all of it is right.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import UsageError, run_time_text, say, table, warn
from app.core.queue.runs import Run, RunState
from app.core.safetext import terminal_safe

# The store (sqlite_utils) and the job files (yaml, and the SSH stack behind the job
# checks) are imported by the commands that use them: ``labdeck --help`` builds these
# parsers and must not load them.
if TYPE_CHECKING:
    from app.core.jobs.feasibility import HostFacts
    from app.core.jobs.jobspec import JobSpec
    from app.core.queue.runstore import RunStore

EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    submit = commands.add_parser(
        "submit",
        help="queue a script or a job file (YAML/TOML, sweeps too)",
        description="Queue runs. A .py/.sh script runs with the ARGS after --; a job file "
        "(.yaml/.yml/.toml) describes one run or a sweep. Prints the id of each queued run. "
        "Nothing is queued if anything is wrong.",
    )
    submit.add_argument("target", metavar="SCRIPT_OR_JOBFILE")
    submit.add_argument("args", nargs="*", metavar="ARGS", help="arguments for the script")
    submit.add_argument("--gpus", type=int, metavar="N", help="GPUs per run (default 1)")
    submit.add_argument("--host", action="append", dest="hosts", metavar="H",
                        help="only on this host (repeat for several)")
    submit.add_argument("--name", metavar="NAME", help="the run's name")
    submit.add_argument("--priority", type=int, metavar="P", help="higher starts first")
    submit.add_argument("--tag", action="append", dest="tags", metavar="T", help="a tag")
    submit.add_argument("--secret", action="append", dest="secrets", metavar="NAME",
                        help="put this keyring secret into the run's environment "
                        "(store it first with: labdeck secrets set NAME)")
    submit.set_defaults(run=_submit)

    ls = commands.add_parser("ls", help="list runs, newest first")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.add_argument("--state", action="append", type=_state, metavar="STATE",
                    help="only runs in this state (repeat for several)")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N runs")
    ls.set_defaults(run=_ls)

    show = commands.add_parser("show", help="everything about one run")
    show.add_argument("run_id", metavar="RUN", help="a run id (or a unique start of one)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_show)

    cancel = commands.add_parser(
        "cancel", help="cancel a run (queued: at once; running: TERM, grace, KILL)"
    )
    cancel.add_argument("run_id", metavar="RUN")
    cancel.set_defaults(run=_cancel)



# -- submit ------------------------------------------------------------------------
def _submit(args: argparse.Namespace) -> int:
    from app.core.jobs.feasibility import host_facts
    from app.core.jobs.jobspec import JobFileError
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    with Store.open() as store:
        specs_by_name = {spec.name: spec for spec in store.hosts()}
        try:
            specs = _specs(args, specs_by_name, host_facts(store))
            _check_secrets(specs)
        except JobFileError as exc:
            for problem in exc.problems:
                warn(terminal_safe(problem))
            warn("nothing was queued")
            return EXIT_USAGE
        ids = RunStore(store).submit([spec.to_dict() for spec in specs], getpass.getuser())
    for run_id in ids:
        say(run_id)
    return 0


def _specs(args: argparse.Namespace, hosts: dict[str, Any],
           facts: Mapping[str, HostFacts]) -> list[JobSpec]:
    from app.core.jobs.jobfile import is_job_file, load_job_file
    from app.core.jobs.jobspec import JobFileError, spec_from_script, validate

    overrides: dict[str, Any] = {}
    if args.gpus is not None:
        overrides["gpus"] = args.gpus
    if args.hosts:
        overrides["hosts"] = tuple(args.hosts)
    if args.priority is not None:
        overrides["priority"] = args.priority
    if args.tags:
        overrides["tags"] = tuple(args.tags)
    target = Path(args.target)
    if is_job_file(target):
        if args.args:
            raise JobFileError([f"{target}: a job file takes no ARGS; put args: in the file"])
        specs = load_job_file(target, known_hosts=list(hosts), facts=facts)
        if args.name is not None:
            overrides["name"] = args.name if len(specs) == 1 else None
            if overrides["name"] is None:
                raise JobFileError([f"{target}: --name names one run; this file makes "
                                    f"{len(specs)} (a sweep)"])
        specs = [dataclasses.replace(spec, **overrides) for spec in specs]
        if args.secrets:
            specs = [dataclasses.replace(spec, secrets=tuple(dict.fromkeys(
                [*spec.secrets, *args.secrets]))) for spec in specs]
    else:
        if args.secrets:
            overrides["secrets"] = tuple(args.secrets)
        if args.name is not None:
            overrides["name"] = args.name
        specs = [spec_from_script(target, list(args.args), **overrides)]
    problems: list[str] = []
    for spec in specs:
        for problem in validate(spec, list(hosts), facts):
            label = f"{spec.name}: {problem}" if len(specs) > 1 else problem
            if label not in problems:
                problems.append(label)
    if not hosts:
        problems.append("no hosts yet; add one with: labdeck hosts add NAME --ssh user@host")
    if problems:
        raise JobFileError(problems)
    return specs


def _check_secrets(specs: list[JobSpec]) -> None:
    """Refuse a submit whose secrets are not in the keyring: a run that cannot get them
    would only fail at launch."""
    names = [name for spec in specs for name in spec.secrets]
    if not names:
        return
    from app.core.jobs import secrets  # loads keyring: only for a submit that names secrets
    from app.core.jobs.jobspec import JobFileError

    problems = secrets.submit_problems(names)
    if problems:
        raise JobFileError(problems)


# -- ls / show ---------------------------------------------------------------------
def _ls(args: argparse.Namespace) -> int:
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    with Store.open() as store:
        runs = RunStore(store).list_runs(args.state, limit=args.limit)
    if args.json:
        say(json.dumps({"runs": [run_json(run) for run in runs]}, indent=2))
        return 0
    if not runs:
        say("no runs" + (" in that state" if args.state else "; queue one with: labdeck submit"))
        return 0
    rows = [[run.id, run.name, str(run.state), _where(run), run.user, run_time_text(run),
             "" if run.exit_code is None else str(run.exit_code), run.reason] for run in runs]
    say(table(rows, ["ID", "NAME", "STATE", "HOST:GPUS", "USER", "TIME", "EXIT", "REASON"]))
    return 0


def _show(args: argparse.Namespace) -> int:
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    with Store.open() as store:
        run = find_run(RunStore(store), args.run_id)
    if args.json:
        say(json.dumps(run_json(run), indent=2))
        return 0
    lines = [
        ("run", run.id), ("name", run.name), ("state", str(run.state)),
        ("where", _where(run) or "-"), ("user", run.user), ("attempt", str(run.attempt)),
        ("submitted", _when(run.created_at)), ("started", _when(run.started_at)),
        ("ended", _when(run.ended_at)), ("time", run_time_text(run) or "-"),
        ("exit code", "-" if run.exit_code is None else str(run.exit_code)),
        ("reason", run.reason or "-"),
        ("cancel", "requested" if run.cancel_requested else "-"),
    ]
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        say(f"{key.ljust(width)}  {terminal_safe(value)}")
    say("spec")
    for key, value in sorted(run.spec.items()):
        if value not in (None, [], {}, ""):
            say(f"  {key}: {terminal_safe(json.dumps(value))}")
    return 0


def find_run(runs: RunStore, text: str) -> Run:
    """The run with id ``text``, or the only one whose id starts with it."""
    run = runs.get(text)
    if run is not None:
        return run
    if len(text) >= 4:
        matches = [r for r in runs.list_runs() if r.id.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UsageError(f"{text!r} matches {len(matches)} runs; give more of the id")
    raise UsageError(f"no run {text!r}; list runs with: labdeck ls")


def run_json(run: Run) -> dict[str, Any]:
    out = dataclasses.asdict(run)
    out["state"] = str(run.state)
    out["gpus"] = list(run.gpus)
    out["gpu_uuids"] = list(run.gpu_uuids)
    out["tags"] = list(run.tags)
    return out


def _where(run: Run) -> str:
    if not run.host:
        return ""
    return f"{run.host}:{','.join(str(g) for g in run.gpus)}" if run.gpus else run.host


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


# -- cancel --------------------------------------------------------------------
def _cancel(args: argparse.Namespace) -> int:
    from app.core.queue.queuelock import QueueLock
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    with Store.open() as store:
        runs = RunStore(store)
        run = find_run(runs, args.run_id)
        if run.state.finished:
            raise UsageError(f"run {run.id} already ended ({run.state})")
        run = runs.request_cancel(run.id)
        lock = QueueLock(store.path)
        nobody = lock.try_acquire()
        lock.release()
    if run.state is RunState.CANCELLED:
        say(f"{run.id} cancelled")
        return 0
    say(f"{run.id}: cancel requested; its job gets TERM, then KILL after the grace period")
    if nobody:
        warn("no dispatcher is running on this queue: start `labdeck serve` (or the window) "
             "to carry the cancel out")
    return 0


def _state(text: str) -> RunState:
    try:
        return RunState(text.lower())
    except ValueError:
        names = ", ".join(state.value for state in RunState)
        raise argparse.ArgumentTypeError(f"unknown state {text!r}; one of: {names}") from None
