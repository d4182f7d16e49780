"""``labdeck logs`` and ``labdeck metrics`` as real subprocesses over a store filled
through the real MetricStore: byte-exact console, every point exactly, clear errors."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.jobspec import JobSpec
from app.core.metricstore import MetricStore
from app.core.runs import RunState
from app.core.runstore import RunStore
from app.core.store import Store
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import MetricPoint, TailChunk

REPO = Path(__file__).resolve().parents[2]

POINTS = [
    MetricPoint("loss", 0, 1700000000.25, 2.5),
    MetricPoint("loss", 1, 1700000001.5, float("nan")),
    MetricPoint("loss", 2, 1700000002.125, 1e300),
    MetricPoint("lr", None, 1700000003.0, float("-inf")),
    MetricPoint("a/b.c", 10**15, 1700000004.0, 0.1 + 0.2),
]


class Home:
    def __init__(self, root: Path) -> None:
        self.home = root / "labdeck"
        (root / "user").mkdir()
        self.env = {"LABDECK_HOME": str(self.home), "HOME": str(root / "user"),
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        self.store = Store.open(self.home / "labdeck.sqlite3")
        self.runs = RunStore(self.store)
        self.metrics = MetricStore(self.store)

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=self.env,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)

    def finished_run(self, host: str = "ws1") -> str:
        (run_id,) = self.runs.submit([JobSpec(name="job", argv=("true",)).to_dict()], "al")
        assert self.runs.claim(run_id, host, [0], ["GPU-0"])
        assert self.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING)
        assert self.runs.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED,
                                    exit_code=0, ended_at=time.time())
        return run_id


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    made = Home(tmp_path)
    yield made
    made.store.close()


def console_bytes() -> bytes:
    # Several MiB (paged reads), bad UTF-8, progress-bar redraws, NUL, no final newline.
    line = b"step %d loss=%f \xff\xfe caf\xc3\xa9\r redraw\x00\n"
    return b"".join(line % (i, i / 7) for i in range(60_000)) + b"partial"


def test_logs_prints_the_stored_console_byte_for_byte(home: Home) -> None:
    run_id = home.finished_run()
    data = console_bytes()
    chunks = [(("ws1"), TailChunk(run_id, "output.log", 1, i, min(i + 200_000, len(data)),
                                 data[i : i + 200_000])) for i in range(0, len(data), 200_000)]
    home.metrics.ingest(chunks)
    result = home.run("logs", run_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert home.run("logs", run_id[:-2]).stdout == data  # a unique start of the id


def test_metrics_prints_every_point_exactly_in_three_forms(home: Home) -> None:
    run_id = home.finished_run()
    home.metrics.ingest([("ws1", TailChunk(run_id, "metrics.jsonl", 1, 0, 100,
                                           points=tuple(POINTS), params={"lr": 0.1}))])
    expected = sorted(((p.series, p.step, p.wall_time, p.value) for p in POINTS),
                      key=lambda p: p[0])

    def same(rows: list[tuple[str, int | None, float, float]]) -> None:
        assert [r[:3] for r in rows] == [e[:3] for e in expected]
        for (*_r, got), (*_e, want) in zip(rows, expected, strict=True):
            assert got == want or (math.isnan(got) and math.isnan(want))

    text = home.run("metrics", run_id)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[0] == "series\tstep\twall_time\tvalue"
    rows = [line.split("\t") for line in lines[1:]]
    same([(s, int(t) if t else None, float(w), float(v)) for s, t, w, v in rows])

    as_csv = list(csv.reader(io.StringIO(home.run("metrics", run_id, "--csv").stdout.decode())))
    assert as_csv[0] == ["series", "step", "wall_time", "value"]
    same([(s, int(t) if t else None, float(w), float(v)) for s, t, w, v in as_csv[1:]])

    doc = json.loads(home.run("metrics", run_id, "--json").stdout)
    assert doc["run_id"] == run_id and doc["params"] == {"lr": 0.1}
    same([(p["series"], p["step"], p["wall_time"], float(p["value"])) for p in doc["points"]])
    assert [p["value"] for p in doc["points"] if isinstance(p["value"], str)] == ["nan", "-inf"]


def test_an_unknown_run_is_a_clear_user_error(home: Home) -> None:
    for args in (["logs", "nosuchrun"], ["metrics", "nosuchrun", "--json"],
                 ["logs", "-f", "nosuchrun"]):
        result = home.run(*args)
        assert result.returncode == 2, result
        assert result.stderr.decode().strip() == (
            "labdeck: no run 'nosuchrun'; list runs with: labdeck ls")
        assert result.stdout == b""
    both = home.run("metrics", "x", "--json", "--csv")
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr


def test_a_run_without_output_says_so_and_a_retry_shows_its_own_attempt(home: Home) -> None:
    (queued,) = home.runs.submit([JobSpec(name="q", argv=("true",)).to_dict()], "al")
    result = home.run("logs", queued)
    assert result.returncode == 0 and result.stdout == b""
    assert f"run {queued} is queued: no output yet" in result.stderr.decode()
    empty = home.run("metrics", queued)
    assert empty.stdout.decode() == "series\tstep\twall_time\tvalue\n"
    assert "no metrics stored" in empty.stderr.decode()

    run_id = home.finished_run()
    home.metrics.ingest([("ws1", TailChunk(run_id, "output.log", 1, 0, 6, b"first\n"))])
    assert home.runs.transition(run_id, RunState.SUCCEEDED, RunState.QUEUED)
    assert home.runs.claim(run_id, "ws1", [0], ["GPU-0"])
    home.metrics.ingest([("ws1", TailChunk(f"{run_id}-a1", "output.log", 1, 0, 7, b"second\n"))])
    assert home.run("logs", run_id).stdout == b"second\n"


def test_follow_on_a_run_whose_host_is_gone_prints_what_is_stored(home: Home) -> None:
    home.store.add_host(HostSpec(name="ws9"))
    run_id = home.finished_run("gone")
    home.metrics.ingest([("gone", TailChunk(run_id, "output.log", 1, 0, 4, b"old\n"))])
    result = home.run("logs", "-f", run_id)
    assert result.returncode == 0 and result.stdout == b"old\n"
    assert "host gone is no longer known" in result.stderr.decode()
