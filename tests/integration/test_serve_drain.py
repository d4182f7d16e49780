"""``labdeck serve --until-done`` exits only once the last runs' output is stored: runs
that print megabytes right before they exit have their whole console in the store when
it returns (it used to exit as soon as no run was active, with the tail still on its way).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.conftest import Lab
from tests.harness.labapp import LabApp, run_dirs

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

RUNS = 4  # one per simulated GPU of the host: they end together
# A little output, then 10 MB at once and a last line right before the exit.
JOB = ("import sys, time; print('start', flush=True); time.sleep(0.3); "
       "sys.stdout.write('x' * 10000000 + '\\n'); sys.stdout.write('end\\n')")


def stored_console(ms: MetricStore, key: str) -> bytes:
    parts, size = [], 0
    while chunk := ms.log_bytes(key, size):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


@pytest.mark.timeout(90)
def test_serve_until_done_exits_with_every_console_stored(tmp_path: Path, lab: Lab) -> None:
    host = lab.hosts[0]
    app = LabApp(tmp_path, [host])
    try:
        job = tmp_path / "burst.yaml"
        values = ", ".join(str(i) for i in range(RUNS))
        job.write_text(f"name: burst\ncommand: [python3, -c, {json.dumps(JOB)}, --i, '0']\n"
                       f"sweep:\n  i: [{values}]\n")
        assert len(app.submit(str(job))) == RUNS
        serve = app.serve("--until-done", "--poll", "0.5")
        assert serve.wait(80) == 0, app.serve_output()[-3000:]
    finally:
        app.close()
    with Store.open(app.store_path) as store:
        runs = RunStore(store).list_runs()
        ms = MetricStore(store)
        short = []
        for run in runs:
            assert run.state is RunState.SUCCEEDED, (run.id, run.state, run.reason)
            key = run.host_run_id
            on_host = (run_dirs(host)[key] / "output.log").read_bytes()
            assert len(on_host) == 10000011
            stored = stored_console(ms, key)
            if stored != on_host:
                short.append(f"{key}: {len(stored)} of {len(on_host)} bytes stored")
    assert short == []
