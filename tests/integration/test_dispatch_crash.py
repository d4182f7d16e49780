"""``labdeck serve`` killed (SIGKILL) at random moments while it dispatches 200 runs, and
started again each time: every run runs exactly once, none is lost, none runs twice.

Each job appends its run id to ``~/ran.log`` on its host (O_APPEND: one line per start),
so the count comes from the jobs themselves, not from the store that was being killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from app.core.queue.runs import RunState
from tests.conftest import Lab
from tests.harness.labapp import LabApp, base_run_id
from tests.harness.sshd import SshdHost

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

RUNS = 200
KILLS = 5
JOB = (
    "import os, time; "
    "fd = os.open(os.path.expanduser('~/ran.log'), os.O_WRONLY | os.O_APPEND | os.O_CREAT); "
    "os.write(fd, (os.environ['LABDECK_RUN_ID'] + '\\n').encode()); time.sleep(0.2)"
)


def ran(hosts: list[SshdHost]) -> Counter[str]:
    starts: Counter[str] = Counter()
    for host in hosts:
        log = host.home / "ran.log"
        if log.exists():
            starts.update(base_run_id(line) for line in log.read_text().split())
    return starts


@pytest.mark.timeout(150)
def test_killing_serve_at_random_points_runs_everything_exactly_once(
    tmp_path: Path, lab: Lab
) -> None:
    hosts = lab.hosts
    for host in hosts:
        (host.home / "ran.log").unlink(missing_ok=True)
    app = LabApp(tmp_path, hosts)
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    started = time.monotonic()
    try:
        job_file = tmp_path / "crash.yaml"
        values = ", ".join(str(i) for i in range(RUNS))
        job_file.write_text(
            f"name: crash\ncommand: [python3, -c, {json.dumps(JOB)}, --i, '0']\n"
            f"sweep:\n  i: [{values}]\n"
        )
        submitted = set(app.submit(str(job_file)))
        assert len(submitted) == RUNS
        kills = []
        for _ in range(KILLS):
            serve = app.serve("--poll", "1")
            # Somewhere between connecting and dispatching at full speed.
            time.sleep(rng.uniform(1.5, 5.0))
            assert serve.poll() is None, app.serve_output()[-3000:]
            serve.send_signal(signal.SIGKILL)
            serve.wait(10)
            kills.append(len(app.runs(RunState.SUCCEEDED)))
        serve = app.serve("--until-done", "--poll", "1")
        assert serve.wait(120) == 0, app.serve_output()[-3000:]
        took = time.monotonic() - started
        runs = app.runs()
    finally:
        app.close()
    assert all(run.state is RunState.SUCCEEDED for run in runs), Counter(r.state for r in runs)
    # Several kills landed mid-queue (not all before the first launch or after the last).
    assert any(0 < done < RUNS for done in kills), (seed, kills)
    starts = ran(hosts)
    missing = submitted - set(starts)
    twice = {run_id: n for run_id, n in starts.items() if n != 1}
    assert not missing, (seed, sorted(missing)[:10])
    assert not twice, (seed, twice)
    assert set(starts) == submitted
    print(f"crash test (seed {seed}): {RUNS} runs, {KILLS} SIGKILLs after {kills} runs done, "
          f"{took:.1f} s, {len(missing)} missing, {len(twice)} duplicates")
