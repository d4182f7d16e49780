"""The chaos run's verdict: what the hosts' run folders and the app's store hold, checked
against what every run's seed says it must be (``chaos_job.plan``).

Per run: exactly one attempt finished (its ``exit_code`` file), every other attempt was
killed by a host reboot or never started; each attempt started at most once (the jobs'
own ``~/chaos-ran.log``); the finished attempt's output is the planned console; the store
shows the planned state and exit code for that very attempt, its stored console has the
sha256 of the attempt's ``output.log`` and every planned metric point is stored exactly
once. A run may end ``lost`` only when its retries ran out. Then ``PRAGMA
integrity_check`` and, per GPU, that no two attempts' lifetimes overlap.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import Run, RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.harness.labapp import base_run_id, run_dirs
from tests.harness.sshd import SshdHost
from tests.reliability.chaos_faults import Reboot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos_job  # the job file is plain stdlib, run as a script on the hosts


@dataclass
class Attempt:
    host: SshdHost
    name: str
    folder: Path
    exit_code: int | None
    started: bool  # the job process was started (state.json)
    began: float  # job.json written
    job_start: float | None
    job_end: float | None
    gpus: list[str]


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def bad(self, counter: str, text: str) -> None:
        self.figures[counter] = self.figures.get(counter, 0) + 1
        self.problems.append(text)


def _attempts(hosts: list[SshdHost]) -> dict[str, list[Attempt]]:
    found: dict[str, list[Attempt]] = defaultdict(list)
    for host in hosts:
        for name, folder in sorted(run_dirs(host).items()):
            job = folder / "job.json"
            if not job.exists():
                continue  # a refused launch: its job.json is removed, nothing ran
            state, code = folder / "state.json", folder / "exit_code"
            found[base_run_id(name)].append(Attempt(
                host=host, name=name, folder=folder,
                exit_code=int(code.read_text()) if code.exists() else None,
                started=state.exists(), began=job.stat().st_mtime,
                job_start=state.stat().st_mtime if state.exists() else None,
                job_end=code.stat().st_mtime if code.exists() else None,
                gpus=list(json.loads(job.read_text()).get("gpu_uuids") or []),
            ))
    return found


def _starts(hosts: list[SshdHost]) -> Counter[tuple[str, str]]:
    """(host, attempt id) → how often a job process started under that id."""
    starts: Counter[tuple[str, str]] = Counter()
    for host in hosts:
        log = host.home / chaos_job.RAN_LOG
        if log.exists():
            starts.update((host.name, line) for line in log.read_text().split())
    return starts


def _killed_by(attempt: Attempt, reboots: list[Reboot]) -> Reboot | None:
    return next((r for r in reboots if r.host == attempt.host.name and r.done >= attempt.began),
                None)


def stored_console(ms: MetricStore, key: str) -> bytes:
    parts, size = [], 0
    while chunk := ms.log_bytes(key, size):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def check_metrics(ms: MetricStore, key: str, want: dict[str, list[tuple[int, float]]],
                  run_id: str, verdict: Verdict) -> None:
    names = {s.name for s in ms.series(key)}
    if names != set(want):
        verdict.problems.append(f"{run_id} ({key}): series {sorted(names)}, "
                                f"expected {sorted(want)}")
    for series, points in want.items():
        stored = ms.points(key, series)
        got = list(zip(stored.step.tolist(), stored.value.tolist(), strict=True))
        have, need = Counter(got), Counter(points)
        missing = sum((need - have).values())
        extra = sum((have - need).values())
        verdict.figures["metric_missing"] += missing
        verdict.figures["metric_duplicated"] += extra
        if missing or extra:
            verdict.problems.append(
                f"{run_id} ({key}) {series}: {missing} point(s) missing, {extra} extra; "
                f"stored {got[:6]}…, expected {points[:6]}…")
        elif not all(s == t and _same(v, w) for (s, v), (t, w) in zip(got, points,
                                                                       strict=True)):
            verdict.problems.append(f"{run_id} ({key}) {series}: points out of order")


def _check_run(run: Run, seed: int, attempts: list[Attempt], starts: Counter[tuple[str, str]],
               reboots: list[Reboot], ms: MetricStore, max_retries: int,
               verdict: Verdict) -> None:
    figs = verdict.figures
    code, console, series, _pause = chaos_job.plan(seed)
    killed = 0
    for attempt in attempts:
        n = starts[(attempt.host.name, attempt.name)]
        if n > 1:
            verdict.bad("duplicated", f"{run.id}: attempt {attempt.name} on "
                        f"{attempt.host.name} started {n} times")
        if attempt.exit_code is None and (attempt.started or n):
            if _killed_by(attempt, reboots) is None:
                verdict.bad("unfinished", f"{run.id}: attempt {attempt.name} on "
                            f"{attempt.host.name} has no exit code and no reboot killed it")
            else:
                killed += 1
    finished = [a for a in attempts if a.exit_code is not None]
    if len(finished) > 1:
        verdict.bad("duplicated", f"{run.id}: {len(finished)} attempts finished: "
                    f"{[(a.host.name, a.name) for a in finished]}")
        return
    figs["attempts_killed"] += killed
    if killed and finished:
        figs["lost_retried"] += 1
    if not finished:
        if run.state is RunState.LOST and run.attempt >= max_retries:
            figs["lost_final"] += 1
        else:
            verdict.bad("missing", f"{run.id} (seed {seed}): no attempt finished; store "
                        f"says {run.state} attempt {run.attempt} ({run.reason})")
        return
    done = finished[0]
    want_state = RunState.SUCCEEDED if code == 0 else RunState.FAILED
    if done.exit_code != code:
        verdict.bad("wrong_exit", f"{run.id} (seed {seed}): exit_code file says "
                    f"{done.exit_code}, the job exits {code}")
    if run.state is not want_state or run.exit_code != code:
        verdict.bad("wrong_exit", f"{run.id} (seed {seed}): store says {run.state} exit "
                    f"{run.exit_code} ({run.reason}); expected {want_state} exit {code}")
    elif run.host != done.host.name or run.host_run_id != done.name:
        verdict.bad("wrong_exit", f"{run.id}: store points at {run.host}:{run.host_run_id}, "
                    f"the finished attempt is {done.host.name}:{done.name}")
    elif code == 0:
        figs["succeeded"] += 1
    else:
        figs["failed_as_expected"] += 1
    output = (done.folder / "output.log").read_bytes()
    if output != console:
        verdict.bad("output_differs", f"{run.id} ({done.name}): output.log has "
                    f"{len(output)} bytes, the job prints {len(console)}")
    stored = stored_console(ms, done.name)
    if hashlib.sha256(stored).digest() != hashlib.sha256(output).digest():
        differ = next((i for i, (a, b) in enumerate(zip(stored, output, strict=False))
                       if a != b), min(len(stored), len(output)))
        verdict.bad("console_mismatch", f"{run.id} ({done.name}): stored console "
                    f"{len(stored)} bytes, output.log {len(output)} bytes; they differ from "
                    f"byte {differ}")
    check_metrics(ms, done.name, series, run.id, verdict)


def _overlaps(attempts: list[Attempt], reboots: list[Reboot]) -> list[str]:
    spans: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    for a in attempts:
        if a.job_start is None:
            continue
        end = a.job_end
        if end is None:
            killer = _killed_by(a, reboots)
            end = killer.done if killer else float("inf")
        for uuid in a.gpus:
            spans[(a.host.name, uuid)].append((a.job_start, end, a.name))
    found = []
    for (host, uuid), items in spans.items():
        items.sort()
        for (_s1, e1, r1), (s2, _e2, r2) in itertools.pairwise(items):
            if s2 < e1:
                found.append(f"{host} {uuid}: {r1} until {e1:.3f} and {r2} from {s2:.3f}")
    return found


def verify(store_path: Path, hosts: list[SshdHost], reboots: list[Reboot],
           max_retries: int) -> Verdict:
    verdict = Verdict()
    figs = verdict.figures
    for key in ("succeeded", "failed_as_expected", "lost_retried", "lost_final",
                "attempts_killed", "duplicated", "missing", "unfinished", "wrong_exit",
                "output_differs", "console_mismatch", "metric_missing", "metric_duplicated",
                "gpu_overlaps"):
        figs[key] = 0
    attempts = _attempts(hosts)
    starts = _starts(hosts)
    with Store.open(store_path) as store:
        runs = RunStore(store).list_runs()
        ms = MetricStore(store)
        figs["runs"] = len(runs)
        known = {run.id for run in runs}
        for stray in sorted(set(attempts) - known):
            verdict.bad("duplicated", f"run folder(s) of an unknown run {stray}")
        for run in runs:
            seed = int(run.spec["params"]["seed"])
            _check_run(run, seed, attempts.get(run.id, []), starts, reboots, ms,
                       max_retries, verdict)
    db = sqlite3.connect(store_path)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    figs["integrity"] = "ok" if integrity == [("ok",)] else str(integrity)
    if figs["integrity"] != "ok":
        verdict.problems.append(f"PRAGMA integrity_check: {integrity}")
    overlaps = _overlaps([a for group in attempts.values() for a in group], reboots)
    figs["gpu_overlaps"] = len(overlaps)
    verdict.problems += [f"GPU double-booked: {o}" for o in overlaps]
    return verdict
