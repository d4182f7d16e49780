"""``labdeck logs`` and ``labdeck metrics`` as real subprocesses over a store filled
through the real MetricStore: byte-exact console, every point exactly, clear errors."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from typing import Any

from app.core.jobs.jobspec import JobSpec
from app.core.queue.runs import RunState
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.labcli import StoreCli

POINTS = [
    MetricPoint("loss", 0, 1700000000.25, 2.5),
    MetricPoint("loss", 1, 1700000001.5, float("nan")),
    MetricPoint("loss", 2, 1700000002.125, 1e300),
    MetricPoint("lr", None, 1700000003.0, float("-inf")),
    MetricPoint("a/b.c", 10**15, 1700000004.0, 0.1 + 0.2),
]


def console_bytes() -> bytes:
    # Several MiB (paged reads), bad UTF-8, progress-bar redraws, NUL, no final newline.
    line = b"step %d loss=%f \xff\xfe caf\xc3\xa9\r redraw\x00\n"
    return b"".join(line % (i, i / 7) for i in range(60_000)) + b"partial"


def test_logs_prints_the_stored_console_byte_for_byte(store_cli: StoreCli) -> None:
    run_id = store_cli.finished_run()
    data = console_bytes()
    chunks = [(("ws1"), TailChunk(run_id, "output.log", 1, i, min(i + 200_000, len(data)),
                                 data[i : i + 200_000])) for i in range(0, len(data), 200_000)]
    store_cli.metrics.ingest(chunks)
    result = store_cli.raw("logs", run_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert store_cli.raw("logs", run_id[:-2]).stdout == data  # a unique start of the id


def test_metrics_prints_every_point_exactly_in_three_forms(store_cli: StoreCli) -> None:
    run_id = store_cli.finished_run()
    store_cli.metrics.ingest([("ws1", TailChunk(run_id, "metrics.jsonl", 1, 0, 100,
                                                points=tuple(POINTS), params={"lr": 0.1}))])
    expected = sorted(((p.series, p.step, p.wall_time, p.value) for p in POINTS),
                      key=lambda p: p[0])

    def same(rows: list[tuple[str, int | None, Any, float]], *, wall: bool = True) -> None:
        """Series, step and value exactly, and the wall time where it is seconds."""
        width = 3 if wall else 2
        assert [r[:width] for r in rows] == [e[:width] for e in expected]
        for (*_r, got), (*_e, want) in zip(rows, expected, strict=True):
            assert got == want or (math.isnan(got) and math.isnan(want))

    # The table is for people: times in the local zone (here 5:30 east of UTC, so a
    # time printed in UTC would show), to the millisecond.
    store_cli.env["TZ"] = "IST-5:30"
    zone = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    text = store_cli.raw("metrics", run_id)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[0] == "series\tstep\ttime\tvalue"
    rows = [line.split("\t") for line in lines[1:]]
    assert ["loss", "0", "2023-11-15 03:43:20.250", "2.5"] in rows  # at 1700000000.25
    assert [r[2] for r in rows] == [
        datetime.datetime.fromtimestamp(e[2], zone).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        for e in expected]
    same([(s, int(t) if t else None, w, float(v)) for s, t, w, v in rows], wall=False)

    as_csv = list(csv.reader(io.StringIO(
        store_cli.raw("metrics", run_id, "--csv").stdout.decode())))
    assert as_csv[0] == ["series", "step", "wall_time", "value"]
    same([(s, int(t) if t else None, float(w), float(v)) for s, t, w, v in as_csv[1:]])

    doc = json.loads(store_cli.raw("metrics", run_id, "--json").stdout)
    assert doc["run_id"] == run_id and doc["params"] == {"lr": 0.1}
    same([(p["series"], p["step"], p["wall_time"], float(p["value"])) for p in doc["points"]])
    assert [p["value"] for p in doc["points"] if isinstance(p["value"], str)] == ["nan", "-inf"]


def test_an_unknown_run_is_a_clear_user_error(store_cli: StoreCli) -> None:
    for args in (["logs", "nosuchrun"], ["metrics", "nosuchrun", "--json"],
                 ["logs", "-f", "nosuchrun"]):
        result = store_cli.raw(*args)
        assert result.returncode == 2, result
        assert result.stderr.decode().strip() == (
            "labdeck: no run 'nosuchrun'; list runs with: labdeck ls")
        assert result.stdout == b""
    both = store_cli.raw("metrics", "x", "--json", "--csv")
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr


def test_a_run_without_output_says_so_and_a_retry_shows_its_own_attempt(
    store_cli: StoreCli,
) -> None:
    (queued,) = store_cli.runs.submit([JobSpec(name="q", argv=("true",)).to_dict()], "al")
    result = store_cli.raw("logs", queued)
    assert result.returncode == 0 and result.stdout == b""
    assert f"run {queued} is queued: no output yet" in result.stderr.decode()
    empty = store_cli.raw("metrics", queued)
    assert empty.stdout.decode() == "series\tstep\ttime\tvalue\n"
    assert "no metrics stored" in empty.stderr.decode()

    run_id = store_cli.finished_run()
    store_cli.metrics.ingest([("ws1", TailChunk(run_id, "output.log", 1, 0, 6, b"first\n"))])
    assert store_cli.runs.transition(run_id, RunState.SUCCEEDED, RunState.QUEUED)
    assert store_cli.runs.claim(run_id, "ws1", [0], ["GPU-0"])
    store_cli.metrics.ingest(
        [("ws1", TailChunk(f"{run_id}-a1", "output.log", 1, 0, 7, b"second\n"))])
    assert store_cli.raw("logs", run_id).stdout == b"second\n"


def test_follow_on_a_run_whose_host_is_gone_prints_what_is_stored(store_cli: StoreCli) -> None:
    store_cli.store.add_host(HostSpec(name="ws9"))
    run_id = store_cli.finished_run("gone")
    store_cli.metrics.ingest([("gone", TailChunk(run_id, "output.log", 1, 0, 4, b"old\n"))])
    result = store_cli.raw("logs", "-f", run_id)
    assert result.returncode == 0 and result.stdout == b"old\n"
    assert "host gone is no longer known" in result.stderr.decode()
