"""Two independent Labdecks (two users, two LABDECK_HOMEs, two ``labdeck serve``) share two
hosts: 200 short runs, and never two runs on one GPU at the same time.

The check reads what the hosts recorded, not what either app believes: for every run
folder on the hosts, the GPUs from job.json, the job's own start/end times, and the
wrapper's state.json and exit_code file times. Per GPU uuid the intervals must not meet.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from app.core.runs import RunState
from tests.conftest import Lab
from tests.harness.labapp import LabApp, base_run_id, run_dirs

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

RUNS_PER_APP = 100
# Records its own start and end (wall clock) in the run folder, around a short sleep.
JOB_CODE = (
    "import os, time; t0 = time.time(); time.sleep(0.2); "
    "open(os.path.join(os.environ['LABDECK_RUN_DIR'], 'times'), 'w')"
    ".write('%r %r' % (t0, time.time()))"
)


def sweep_file(path: Path, name: str, count: int) -> Path:
    values = ", ".join(str(i) for i in range(count))
    path.write_text(
        f"name: {name}\n"
        f"command: [python3, -c, {json.dumps(JOB_CODE)}, --i, '0']\n"
        f"sweep:\n  i: [{values}]\n"
    )
    return path


def overlaps(intervals: dict[str, list[tuple[float, float, str]]]) -> list[str]:
    found = []
    for uuid, spans in intervals.items():
        spans.sort()
        for (s1, e1, r1), (s2, e2, r2) in itertools.pairwise(spans):
            if s2 < e1:
                found.append(f"{uuid}: {r1} [{s1:.3f}, {e1:.3f}] and {r2} [{s2:.3f}, {e2:.3f}]")
    return found


@pytest.mark.timeout(150)
def test_two_labdecks_never_share_a_gpu(tmp_path: Path, lab: Lab) -> None:
    hosts = lab.hosts[:2]
    apps = [LabApp(tmp_path / f"user{i}", hosts) for i in (1, 2)]
    started = time.monotonic()
    try:
        submitted: set[str] = set()
        for i, app in enumerate(apps):
            ids = app.submit(str(sweep_file(tmp_path / f"sweep{i}.yaml", f"u{i}", RUNS_PER_APP)))
            assert len(ids) == RUNS_PER_APP
            submitted |= set(ids)
        serves = [app.serve("--until-done", "--poll", "1") for app in apps]
        for app, serve in zip(apps, serves, strict=True):
            code = serve.wait(130)
            assert code == 0, app.serve_output()[-3000:]
        took = time.monotonic() - started
        refused = sum(app.serve_output().count("launch refused") for app in apps)
        for app in apps:
            runs = app.runs()
            assert len(runs) == RUNS_PER_APP
            # Both apps really shared both hosts.
            assert {run.host for run in runs} == {host.name for host in hosts}
            assert all(run.state is RunState.SUCCEEDED and run.exit_code == 0 for run in runs), \
                [(run.id, run.state, run.reason) for run in runs if run.state.finished is False
                 or run.exit_code != 0]
    finally:
        for app in apps:
            app.close()

    jobs: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    wrappers: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    ran: dict[str, int] = defaultdict(int)
    for host in hosts:
        for name, folder in run_dirs(host).items():
            if not (folder / "state.json").exists():
                continue  # a refused launch: the wrapper never started the job
            job = json.loads((folder / "job.json").read_text())
            start, end = map(float, (folder / "times").read_text().split())
            began = (folder / "state.json").stat().st_mtime
            ended = (folder / "exit_code").stat().st_mtime
            ran[base_run_id(name)] += 1
            for uuid in job["gpu_uuids"]:
                jobs[uuid].append((start, end, name))
                wrappers[uuid].append((began, ended, name))
    assert set(ran) == submitted
    assert [r for r, n in ran.items() if n != 1] == []
    assert overlaps(jobs) == []
    assert overlaps(wrappers) == []
    assert len(jobs) == 8  # both hosts' four GPUs were used
    print(f"two apps: {len(submitted)} runs on {len(jobs)} GPUs in {took:.1f} s, "
          f"{refused} launches refused by a lease, 0 overlaps, 0 duplicates")
