"""A real job, started by the real wrapper in a working folder it shares with others,
writes TensorBoard events with tensorboardX's ``SummaryWriter()`` and no arguments (so
into ``runs/<date>_<host>/``): its curve is found there, while an event file that another
process writes into the same folder meanwhile is left out (its writer is not the job's)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.harness.runhost import AGENT_DIR, RunHost, python_job
from tests.harness.tb_events import write_events
from tests.unit.test_event_files import Collector

sys.path.insert(0, str(AGENT_DIR))
import tails

JOB = """
import time
from tensorboardX import SummaryWriter
writer = SummaryWriter()
for step in range(5):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
writer.flush()
time.sleep(4)  # alive a little: the writer is known by its process
writer.close()
"""


@pytest.mark.timeout(60)
def test_summary_writer_defaults_in_a_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboardX")
    host = RunHost(tmp_path)
    monkeypatch.setenv("HOME", str(host.home))
    shared = host.home / "project"
    shared.mkdir()
    try:
        assert host.launch("rwd00001", python_job(JOB), workdir="project")["ok"]
        out = Collector()
        t = tails.Tails(out)
        t.watch("rwd00001", {})
        # Someone else's event file in the same folder, written after the job started.
        write_events(shared / "runs" / "someone-else", 3, "simple", ("theirs",))
        deadline = time.monotonic() + 30
        now = 0.0
        while not any(c.get("points") for c in out.chunks):
            assert time.monotonic() < deadline, out.chunks
            now += tails.DISCOVER_WORKDIR_EVERY_S
            t.poll(1 << 30, now=now)
            time.sleep(0.2)
        host.wait_kind("rwd00001", "finished", timeout=30)
        t.poll(1 << 30, now=now + 10)
        points = [p for c in out.chunks for p in c.get("points", [])]
        sources = {c["source"] for c in out.chunks if c.get("points")}
        assert [(p[0], p[1]) for p in points] == [("loss", i) for i in range(5)]
        assert len(sources) == 1 and sources.pop().startswith("wd/runs/")
    finally:
        host.cleanup()
