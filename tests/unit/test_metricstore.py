"""MetricStore on a real SQLite file: exactly-once ingest, restarts, resets, 1M points
(kill -9 of a writer process: tests/integration/test_store_processes.py)."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest

from app.core import schema
from app.core import store as store_mod
from app.core.metrics import consolelog, seriesblob
from app.core.metrics.metricstore import MetricStore
from app.core.store import Store
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.run_rows import integrity_ok

LOG = "output.log"
JSONL = "metrics.jsonl"


@pytest.fixture
def ms(store: Store) -> MetricStore:
    return MetricStore(store)


def console(run: str, stream: bytes, start: int, end: int, inode: int = 7,
            reset: bool = False) -> tuple[str, TailChunk]:
    return ("ws1", TailChunk(run, LOG, inode, start, end, data=stream[start:end], reset=reset))


def pts(first: int, count: int, series: str = "loss") -> tuple[MetricPoint, ...]:
    return tuple(MetricPoint(series, j, 1000.0 + j, j * 0.5) for j in range(first, first + count))


def metrics(run: str, start: int, end: int, points: tuple[MetricPoint, ...], inode: int = 9,
            reset: bool = False) -> tuple[str, TailChunk]:
    return ("ws1", TailChunk(run, JSONL, inode, start, end, points=points, reset=reset))


def test_migration_3_adds_the_metric_tables_to_a_version_2_store(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 2)
    with Store.open() as old:
        old.set_setting("kept", 1)
        assert "metric_series" not in old.db.table_names()
    monkeypatch.setattr(store_mod, "MIGRATIONS", schema.MIGRATIONS)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", schema.SCHEMA_VERSION)
    with Store.open() as new:
        assert new.schema_version() == schema.SCHEMA_VERSION >= 3
        assert new.get_setting("kept") == 1
        assert {"metric_series", "metric_chunks", "log_chunks", "tail_offsets",
                "run_params"} <= set(new.db.table_names())
        MetricStore(new).ingest([metrics("r1", 0, 10, pts(0, 2))])
        assert integrity_ok(new)


STREAM = b"".join(b"line %06d of the console\n" % i for i in range(2000))


def test_console_redelivered_and_overlapping_chunks_are_stored_once(ms: MetricStore) -> None:
    first = ms.ingest([console("r1", STREAM, 0, 100), console("r1", STREAM, 100, 300)])
    assert first.log_runs == {"r1"} and first.log_bytes == 300 and not first.gaps
    again = ms.ingest([console("r1", STREAM, 0, 100), console("r1", STREAM, 100, 300)])
    assert again.duplicates == 2 and again.log_bytes == 0 and not again.log_runs
    trimmed = ms.ingest([console("r1", STREAM, 200, 400)])  # stored is 300: keep 300..400
    assert trimmed.log_bytes == 100
    gap = ms.ingest([console("r1", STREAM, 500, 600)])
    assert [(g.reason, g.stored_offset, g.start) for g in gap.gaps] == [("gap", 400, 500)]
    assert ms.offsets("r1") == {LOG: 400}
    ms.ingest([console("r1", STREAM, 400, 600)])
    assert ms.log_size("r1") == 600 and ms.offsets("r1") == {LOG: 600}
    assert ms.log_bytes("r1") == STREAM[:600]
    assert ms.log_bytes("r1", 123, 457) == STREAM[123:457]
    assert ms.log_bytes("other") == b"" and ms.offsets("other") == {}


def test_first_chunk_not_at_zero_is_a_gap_and_malformed_chunks_are_dropped(
        ms: MetricStore) -> None:
    result = ms.ingest([console("r1", STREAM, 50, 80)])
    assert result.gaps[0].stored_offset == 0 and ms.log_size("r1") == 0
    bad = ("ws1", TailChunk("r1", LOG, 7, 0, 10, data=b"short"))
    result = ms.ingest([bad])
    assert "malformed" in result.warnings[0][2] and ms.offsets("r1") == {}


def test_point_chunks_redelivered_or_overlapping_are_never_stored_twice(
        ms: MetricStore) -> None:
    ms.ingest([metrics("r1", 0, 100, pts(0, 10))])
    again = ms.ingest([metrics("r1", 0, 100, pts(0, 10))])
    assert again.duplicates == 1 and again.points == 0
    overlap = ms.ingest([metrics("r1", 50, 200, pts(5, 15))])  # cannot be split
    assert [g.reason for g in overlap.gaps] == ["overlap"] and overlap.points == 0
    ms.ingest([metrics("r1", 100, 200, pts(10, 10))])
    p = ms.points("r1", "loss")
    assert p.step.dtype == np.int64 and p.step.tolist() == list(range(20))
    assert p.value.tolist() == [j * 0.5 for j in range(20)]
    assert p.wall.tolist() == [1000.0 + j for j in range(20)]
    assert ms.offsets("r1") == {JSONL: 200}
    [info] = ms.series("r1")
    assert (info.name, info.count, info.first_step, info.last_step) == ("loss", 20, 0, 19)
    assert (info.min_value, info.max_value, info.last_value) == (0.0, 9.5, 9.5)
    assert (info.first_wall, info.last_wall) == (1000.0, 1019.0)


def test_restart_mid_stream_resumes_from_committed_offsets(home: Path) -> None:
    with Store.open() as s:
        ms = MetricStore(s)
        ms.ingest([console("r1", STREAM, 0, 1000), metrics("r1", 0, 100, pts(0, 10))])
    with Store.open() as s:  # a new process would do exactly this
        ms = MetricStore(s)
        offsets = ms.offsets("r1")
        assert offsets == {LOG: 1000, JSONL: 100}
        # The agent resumed a little earlier than the store (watch offsets were stale).
        ms.ingest([console("r1", STREAM, 800, 1500), metrics("r1", 0, 100, pts(0, 10)),
                   metrics("r1", 100, 300, pts(10, 20))])
        assert ms.log_bytes("r1") == STREAM[:1500]
        assert ms.points("r1", "loss").step.tolist() == list(range(30))
        assert integrity_ok(s)


def test_console_reset_appends_the_new_file_and_a_repeated_reset_is_dropped(
        ms: MetricStore) -> None:
    ms.ingest([console("r1", STREAM, 0, 500, inode=1)])
    new_file = b"fresh start\n" * 20
    ms.ingest([console("r1", new_file, 0, 100, inode=2, reset=True)])
    assert ms.log_bytes("r1") == STREAM[:500] + new_file[:100]
    assert ms.offsets("r1") == {LOG: 100}
    # After a reconnect the agent sees the same rotation again, now grown by 50 bytes.
    repeat = ms.ingest([console("r1", new_file, 0, 100, inode=2, reset=True)])
    assert repeat.duplicates == 1
    ms.ingest([console("r1", new_file, 0, 150, inode=2, reset=True)])
    assert ms.log_bytes("r1") == STREAM[:500] + new_file[:150]
    # A real truncation in place (same inode, different bytes) is new content.
    other = b"third content\n" * 5
    ms.ingest([console("r1", other, 0, 60, inode=2, reset=True)])
    assert ms.log_bytes("r1") == STREAM[:500] + new_file[:150] + other[:60]
    assert ms.offsets("r1") == {LOG: 60} and ms.log_size("r1") == 710


def test_metrics_reset_and_replaced_file(ms: MetricStore) -> None:
    ms.ingest([metrics("r1", 0, 100, pts(0, 10), inode=5)])
    ms.ingest([metrics("r1", 0, 30, pts(100, 3), inode=6, reset=True)])
    repeat = ms.ingest([metrics("r1", 0, 30, pts(100, 3), inode=6, reset=True)])
    assert repeat.duplicates == 1
    assert ms.points("r1", "loss").step.tolist() == [*range(10), 100, 101, 102]
    replaced = ms.ingest([metrics("r1", 30, 40, pts(200, 1), inode=8)])
    assert "replaced" in replaced.warnings[0][2] and replaced.points == 1


def test_nan_inf_huge_values_and_missing_steps(ms: MetricStore) -> None:
    values = [1.0, math.nan, math.inf, -1e308, 1e308, -math.inf, math.nan]
    points = tuple(MetricPoint("x", None if i == 3 else i, float(i), v)
                   for i, v in enumerate(values))
    ms.ingest([metrics("r1", 0, 10, points)])
    p = ms.points("r1", "x")
    assert p.step.dtype == np.float64 and math.isnan(p.step[3]) and p.step[4] == 4.0
    assert np.array_equal(p.value, np.array(values), equal_nan=True)
    [info] = ms.series("r1")
    assert info.min_value == -math.inf and info.max_value == math.inf
    assert math.isnan(info.last_value) and info.count == 7
    ms.ingest([metrics("r1", 10, 20, (MetricPoint("only_nan", 1, 0.0, math.nan),))])
    nan_info = {s.name: s for s in ms.series("r1")}["only_nan"]
    assert math.isnan(nan_info.min_value) and math.isnan(nan_info.max_value)


def test_params_merge_and_last_values(ms: MetricStore) -> None:
    ms.ingest([("ws1", TailChunk("r1", JSONL, 9, 0, 10, points=pts(0, 3),
                                 params={"lr": 0.1, "opt": {"name": "adam"}}))])
    ms.ingest([("ws1", TailChunk("r1", "tb/events.out.tfevents.1", 3, 0, 10,
                                 params={"lr": 0.2, "batch": 64}))])
    assert ms.params("r1") == {"batch": 64, "lr": 0.2, "opt": {"name": "adam"}}
    ms.ingest([metrics("r2", 0, 10, pts(0, 5) + pts(0, 2, "acc"))])
    assert ms.last_values(["r1", "r2", "r3"], ["loss"]) == {"r1": {"loss": 1.0},
                                                            "r2": {"loss": 2.0}}
    assert ms.last_values(["r2"]) == {"r2": {"loss": 2.0, "acc": 0.5}}
    ms.delete_run("r2")
    assert ms.series("r2") == [] and ms.offsets("r2") == {} and ms.series("r1")


def test_console_points_mapping_and_parser_see_exactly_the_new_bytes(ms: MetricStore) -> None:
    seen: list[tuple[str, bytes]] = []

    def parse(run_id: str, data: bytes) -> list[MetricPoint]:
        seen.append((run_id, data))
        return [MetricPoint("console/loss", len(seen), 0.0, float(len(data)))]

    ms.ingest([console("r1", STREAM, 0, 100)], console_points=parse)
    ms.ingest([console("r1", STREAM, 50, 180), console("r1", STREAM, 0, 10)],
              console_points=parse)
    assert seen == [("r1", STREAM[:100]), ("r1", STREAM[100:180])]
    ms.ingest([console("r2", STREAM, 0, 10)],
              console_points={"r2": [MetricPoint("console/acc", 1, 0.0, 0.9)]})
    assert ms.points("r1", "console/loss").value.tolist() == [100.0, 80.0]
    assert ms.points("r2", "console/acc").value.tolist() == [0.9]


def test_many_small_ingests_keep_rows_few_and_points_exact(ms: MetricStore,
                                                           store: Store) -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, 600)
    pos, offset, data_pos = 0, 0, 0
    for size in sizes:
        size = int(size)
        ms.ingest([metrics("r1", offset, offset + size, pts(pos, size)),
                   console("r1", STREAM, data_pos, data_pos + 60)])
        pos, offset, data_pos = pos + size, offset + size, data_pos + 60
    p = ms.points("r1", "loss")
    assert p.step.tolist() == list(range(pos)) and ms.series("r1")[0].count == pos
    assert ms.log_bytes("r1") == STREAM[:data_pos]
    # A live view reads only the points after those it holds, across every row boundary.
    for start in [1, 17, pos // 3, pos - 40, pos - 1, pos, pos + 5]:
        since = ms.points_since("r1", "loss", start)
        assert since.step.tolist() == list(range(start, pos))
        assert np.array_equal(since.value, p.value[start:])
    assert len(ms.points_since("r1", "nope", 3)) == 0
    with store.lock:
        conn = store.db.conn
        sizes_rows = [n for (n,) in conn.execute("SELECT n FROM metric_chunks ORDER BY chunk_no")]
        log_rows = conn.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0]
    assert len(sizes_rows) <= 18  # the tail halves row to row: about log2(64k) rows at most
    tail = [n for n in sizes_rows if n < seriesblob.CHUNK_POINTS]
    assert all(a >= 2 * b for a, b in itertools.pairwise(tail))
    assert log_rows <= data_pos // consolelog.SMALL_ROW + 1


def test_a_million_points_round_trip_in_order(ms: MetricStore, store: Store) -> None:
    n, per_chunk = 1_000_000, 20_000
    rng = np.random.default_rng(1)
    values = rng.standard_normal(n)
    values[::9973] = np.nan
    batch: list[tuple[str, TailChunk]] = []
    for k in range(0, n, per_chunk):
        chunk_points = tuple(MetricPoint("loss", j, 1.7e9 + j, float(values[j]))
                             for j in range(k, k + per_chunk))
        batch.append(metrics("big", k, k + per_chunk, chunk_points))
    result = ms.ingest(batch[:25])
    result2 = ms.ingest(batch[25:])
    assert result.points + result2.points == n
    tail = ms.points_since("big", "loss", n - 70_000)  # from inside a full 64k row
    assert tail.step.tolist() == list(range(n - 70_000, n))
    assert np.array_equal(tail.value, values[n - 70_000:], equal_nan=True)
    p = ms.points("big", "loss")
    assert len(p) == n and np.array_equal(p.step, np.arange(n))
    assert np.array_equal(p.value, values, equal_nan=True)
    assert np.array_equal(p.wall, 1.7e9 + np.arange(n))
    [info] = ms.series("big")
    assert info.count == n and info.last_step == n - 1
    assert info.max_value == np.nanmax(values) and info.min_value == np.nanmin(values)
    with store.lock:
        rows = store.db.conn.execute("SELECT n FROM metric_chunks").fetchall()
    assert max(r[0] for r in rows) == seriesblob.CHUNK_POINTS
    assert integrity_ok(store)


def test_log_reads_are_bounded_and_page_exactly(ms: MetricStore) -> None:
    big = os.urandom(consolelog.READ_MAX + 700_000)
    step = 200_000
    ms.ingest([console("r1", big, k, min(k + step, len(big))) for k in range(0, len(big), step)])
    assert ms.log_size("r1") == len(big)
    first = ms.log_bytes("r1")
    assert first == big[: consolelog.READ_MAX]
    assert ms.log_bytes("r1", 10, None) == big[10 : 10 + consolelog.READ_MAX]
    pages, start = [], 0
    while chunk := ms.log_bytes("r1", start, start + 1_000_000):
        pages.append(chunk)
        start += len(chunk)
    assert b"".join(pages) == big
    assert ms.log_bytes("r1", len(big) - 5, len(big) + 100) == big[-5:]
    assert ms.log_bytes("r1", len(big) + 1) == b"" and ms.log_bytes("r1", 50, 40) == b""


def test_out_of_range_steps_and_odd_values_do_not_fail_the_batch(ms: MetricStore) -> None:
    odd = (MetricPoint("x", 2**70, 1.0, 1.0), MetricPoint("x", 5, 2.0, 10**400),
           MetricPoint("x", 6, 3.0, "oops"))  # type: ignore[arg-type]
    result = ms.ingest([metrics("r1", 0, 10, odd), console("r1", STREAM, 0, 10)])
    assert result.points == 3 and ms.offsets("r1") == {JSONL: 10, LOG: 10}
    p = ms.points("r1", "x")
    assert math.isnan(p.step[0]) and p.step[1:].tolist() == [5.0, 6.0]
    assert p.value[0] == 1.0 and math.isnan(p.value[1]) and math.isnan(p.value[2])


def test_an_inode_beyond_signed_64_bits_round_trips(ms: MetricStore) -> None:
    # Some file systems hand out inodes >= 2**63; SQLite's INTEGER is signed.
    big = (1 << 64) - 5
    ms.ingest([console("r9", STREAM, 0, 100, inode=big)])
    assert ms.offsets("r9")[LOG] == 100
    # A re-delivery with that inode is recognised (not taken for a replaced file).
    ms.ingest([console("r9", STREAM, 0, 100, inode=big), console("r9", STREAM, 100, 150,
                                                                  inode=big)])
    assert ms.log_bytes("r9") == STREAM[:150]
