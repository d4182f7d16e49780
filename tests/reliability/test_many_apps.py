"""Several independent Labdecks (separate LABDECK_HOMEs, each its own ``labdeck serve``)
share two hosts with four simulated GPUs each: never two runs on one GPU at once.

The verdict comes from what the hosts recorded (``tests.harness.gpu_intervals``), not
from what the apps believe: per GPU uuid the jobs' own start/end times and the wrappers'
state.json → exit_code times must not meet, every submitted run started exactly once on
a host and ended with exit code 0, and every app's store agrees that it succeeded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.core.queue.runs import RunState
from tests.conftest import Lab
from tests.harness.gpu_intervals import overlaps, read_host_records, sweep_file
from tests.harness.labapp import LabApp
from tests.reliability.scale import pick

pytestmark = [pytest.mark.reliability, pytest.mark.sshd, pytest.mark.slow]

# apps → runs submitted in all (split evenly between the apps).
SIZES = {2: pick(60, 200), 4: pick(120, 500)}


@pytest.mark.timeout(pick(120, 900))
@pytest.mark.parametrize("apps", sorted(SIZES))
def test_labdecks_sharing_hosts_never_share_a_gpu(tmp_path: Path, lab: Lab, apps: int) -> None:
    hosts = lab.hosts[:2]
    # Runs of an earlier parametrization stay in the hosts' folders: compare only ours.
    before = {host.name: {p.name for p in (host.home / ".labdeck" / "runs").glob("*")}
              for host in hosts}
    total = SIZES[apps]
    per_app = total // apps
    labdecks = [LabApp(tmp_path / f"user{i}", hosts) for i in range(apps)]
    started = time.monotonic()
    submitted: set[str] = set()
    try:
        for i, labdeck in enumerate(labdecks):
            ids = labdeck.submit(str(sweep_file(tmp_path / f"sweep{i}.yaml", f"u{i}", per_app)))
            assert len(ids) == per_app
            submitted |= set(ids)
        serves = [labdeck.serve("--until-done", "--poll", "1") for labdeck in labdecks]
        for labdeck, serve in zip(labdecks, serves, strict=True):
            code = serve.wait(pick(100, 850))
            assert code == 0, labdeck.serve_output()[-3000:]
        took = time.monotonic() - started
        refused = sum(labdeck.serve_output().count("launch refused") for labdeck in labdecks)
        for labdeck in labdecks:
            runs = labdeck.runs()
            assert len(runs) == per_app
            # Every app really used both hosts.
            assert {run.host for run in runs} == {host.name for host in hosts}
            bad = [(run.id, run.state, run.exit_code, run.reason) for run in runs
                   if run.state is not RunState.SUCCEEDED or run.exit_code != 0]
            assert bad == []
    finally:
        for labdeck in labdecks:
            labdeck.close()

    records = read_host_records(hosts, skip=before)
    assert set(records.ran) == submitted
    assert records.duplicates() == []
    assert records.failed() == {}
    found = overlaps(records.jobs) + overlaps(records.wrappers)
    assert found == []
    assert len(records.jobs) == 8  # both hosts' four GPUs were used
    print(f"\n{apps} apps: {len(submitted)} runs on {len(records.jobs)} GPUs in {took:.1f} s, "
          f"{refused} launches refused by a lease, {len(found)} overlaps, "
          f"{len(records.duplicates())} duplicates")
