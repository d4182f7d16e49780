"""What the hosts recorded about the runs they ran, and whether two ever shared a GPU.

The apps' stores say what each Labdeck believes; these helpers read the run folders on
the hosts instead: for every run that really started, the GPUs from job.json, the job's
own start/end wall-clock times (``JOB_CODE`` writes them to ``times``) and the wrapper's
state.json / exit_code file times. ``overlaps`` then checks, per GPU uuid, that no two of
those intervals meet.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.labapp import base_run_id, run_dirs
from tests.harness.sshd import SshdHost

Intervals = dict[str, list[tuple[float, float, str]]]

# Records its own start and end (wall clock) in the run folder, around a short sleep.
JOB_CODE = (
    "import os, time; t0 = time.time(); time.sleep(0.2); "
    "open(os.path.join(os.environ['LABDECK_RUN_DIR'], 'times'), 'w')"
    ".write('%r %r' % (t0, time.time()))"
)


def sweep_file(path: Path, name: str, count: int, code: str = JOB_CODE) -> Path:
    """A job file at ``path``: a sweep of ``count`` runs of ``code`` (1 GPU each), which
    must write its start and end into ``times`` as ``JOB_CODE`` does."""
    values = ", ".join(str(i) for i in range(count))
    path.write_text(
        f"name: {name}\n"
        f"command: [python3, -c, {json.dumps(code)}, --i, '0']\n"
        f"sweep:\n  i: [{values}]\n"
    )
    return path


def overlaps(intervals: Intervals) -> list[str]:
    """Every pair of intervals on one GPU uuid that meet, described (empty when none)."""
    found = []
    for uuid, spans in intervals.items():
        for (s1, e1, r1), (s2, e2, r2) in itertools.pairwise(sorted(spans)):
            if s2 < e1:
                found.append(f"{uuid}: {r1} [{s1:.3f}, {e1:.3f}] and {r2} [{s2:.3f}, {e2:.3f}]")
    return found


@dataclass
class HostRecords:
    """The runs the hosts started: intervals per GPU uuid and starts per queue run id."""

    jobs: Intervals = field(default_factory=lambda: defaultdict(list))
    wrappers: Intervals = field(default_factory=lambda: defaultdict(list))
    ran: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Host folder name → the exit code its wrapper wrote (None: none written).
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def duplicates(self) -> list[str]:
        """Queue run ids whose job the hosts started more than once."""
        return sorted(run_id for run_id, count in self.ran.items() if count > 1)

    def failed(self) -> dict[str, int | None]:
        """Host folders whose job did not end with exit code 0."""
        return {name: code for name, code in self.exit_codes.items() if code != 0}


def read_host_records(
    hosts: list[SshdHost], skip: dict[str, set[str]] | None = None,
    home: Callable[[SshdHost], Path] | None = None,
) -> HostRecords:
    """Read every run folder on ``hosts`` whose job started (state.json exists), but
    for the folder names in ``skip[host name]`` (runs of an earlier test). ``home``
    gives the HOME on a host of the user whose runs to read (root's by default)."""
    records = HostRecords()
    for host in hosts:
        old = (skip or {}).get(host.name, set())
        for name, folder in run_dirs(host, home(host) if home else None).items():
            if name in old or not (folder / "state.json").exists():
                continue  # a refused launch: the wrapper never started the job
            job = json.loads((folder / "job.json").read_text())
            code_file = folder / "exit_code"
            code = int(code_file.read_text()) if code_file.exists() else None
            records.exit_codes[name] = code
            records.ran[base_run_id(name)] += 1
            times = folder / "times"
            if code is None or not times.exists():
                continue  # failed() reports it; no interval to compare
            start, end = map(float, times.read_text().split())
            began = (folder / "state.json").stat().st_mtime
            ended = code_file.stat().st_mtime
            for uuid in job["gpu_uuids"]:
                records.jobs[uuid].append((start, end, name))
                records.wrappers[uuid].append((began, ended, name))
    return records
