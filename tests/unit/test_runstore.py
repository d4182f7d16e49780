"""The run queue on a real SQLite file: submit, compare-and-set, cancel, paging, races
(threads here; processes in tests/integration/test_store_processes.py)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core import schema
from app.core import store as store_mod
from app.core.queue.runs import RUN_ID_RE, Run, RunState, TransitionError
from app.core.queue.runstore import RunNotFoundError, RunStateError, RunStore
from app.core.store import Store
from ssh_backend.hostspec import HostSpec

Q, L, R = RunState.QUEUED, RunState.LAUNCHING, RunState.RUNNING


def job(name: str = "train", **over: Any) -> dict[str, Any]:
    """A spec dict in ``JobSpec.to_dict()`` form (every key of the contract)."""
    spec: dict[str, Any] = {
        "name": name, "argv": ["python", "train.py", "--lr", "0.1"], "shell": None,
        "workdir": None, "upload": None, "env": {"WANDB_MODE": "offline"}, "setup": [],
        "conda_env": None, "venv": None, "gpus": 1, "min_free_mem_mib": None,
        "hosts": [], "host_tags": [], "pin_gpus": [], "priority": 0, "tags": ["exp1"],
        "params": {"lr": 0.1}, "time_limit_s": None, "retry_on_lost": True,
        "max_retries": 3,
    }
    spec.update(over)
    return spec


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "labdeck.sqlite3"


@pytest.fixture
def runs(path: Path) -> Iterator[RunStore]:
    store = Store.open(path)
    yield RunStore(store)
    store.close()


def test_migration_2_adds_runs_and_reservations_to_a_version_1_store(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 1)
    with Store.open(path) as old:
        old.add_host(HostSpec(name="gpu1", hostname="10.0.0.7"))
        assert "runs" not in old.db.table_names()
    monkeypatch.undo()
    with Store.open(path) as new:
        assert new.schema_version() == schema.SCHEMA_VERSION >= 2
        assert new.host("gpu1") == HostSpec(name="gpu1", hostname="10.0.0.7")
        columns = {c.name for c in new.db.table("runs").columns}
        indexes = {tuple(i.columns) for i in new.db.table("runs").indexes}
        reservation_cols = [c.name for c in new.db.table("reservations").columns]
    assert {f.name for f in dataclasses.fields(Run)} | {"updated_at"} <= columns
    assert ("state", "priority", "seq") in indexes
    assert reservation_cols == ["host", "gpu_index", "note", "created_at"]


def test_submit_queues_every_spec_with_time_sortable_ids_and_fifo_seq(
    runs: RunStore,
) -> None:
    before = time.time()
    specs = [job(f"j{i}", priority=i % 2, tags=["a", str(i)], params={"i": i})
             for i in range(50)]
    ids = runs.submit(specs, user="alice")
    assert len(set(ids)) == 50 and all(RUN_ID_RE.match(i) for i in ids)
    assert ids == sorted(ids)  # submission order is id order
    got = [runs.get(i) for i in ids]
    assert all(r is not None for r in got)
    seqs = [r.seq for r in got if r]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    first = got[7]
    assert first is not None
    assert (first.name, first.user, first.state, first.priority) == ("j7", "alice", Q, 1)
    assert first.tags == ("a", "7") and first.params == {"i": 7}
    assert first.spec == specs[7] and first.attempt == 0
    assert first.created_at >= before and first.queued_at == first.created_at
    later = runs.submit([job("later")], user="bob")
    later_run = runs.get(later[0])
    assert later_run is not None and later_run.seq > max(seqs)
    assert runs.get("rnope") is None


def test_a_bad_spec_in_a_batch_queues_nothing(runs: RunStore) -> None:
    with pytest.raises(ValueError, match="priority"):
        runs.submit([job("ok"), job("bad", priority="high")], user="alice")
    with pytest.raises(ValueError, match="name"):
        runs.submit([job(""), job("ok")], user="alice")
    assert runs.count() == 0


def test_queued_is_priority_then_fifo(runs: RunStore) -> None:
    ids = runs.submit([job("low1"), job("high1", priority=5), job("low2"),
                       job("high2", priority=5), job("neg", priority=-1)], user="u")
    assert [r.name for r in runs.queued()] == ["high1", "high2", "low1", "low2", "neg"]
    runs.claim(ids[1], "h", [0], ["GPU-0"])
    assert [r.name for r in runs.queued()] == ["high2", "low1", "low2", "neg"]


def test_transition_is_compare_and_set_and_follows_the_state_machine(
    runs: RunStore,
) -> None:
    (rid,) = runs.submit([job()], user="alice")
    assert runs.transition(rid, Q, L, host="h1", gpus=(2,), gpu_uuids=("GPU-2",))
    assert not runs.transition(rid, Q, L)  # already moved: the CAS fails
    assert runs.transition(rid, L, R, pid=4242, boot_id="b1", started_at=10.0)
    with pytest.raises(TransitionError):
        runs.transition(rid, R, L)
    with pytest.raises(ValueError, match="cannot set"):
        runs.transition(rid, R, RunState.FAILED, state="queued")
    assert runs.transition(rid, R, RunState.FAILED, exit_code=3, ended_at=11.0,
                           reason="exit code 3")
    run = runs.get(rid)
    assert run is not None
    assert (run.state, run.host, run.gpus, run.gpu_uuids, run.pid, run.exit_code) == (
        RunState.FAILED, "h1", (2,), ("GPU-2",), 4242, 3)
    assert not runs.transition("rmissing", Q, L)


def test_requeue_bumps_attempt_clears_placement_and_keeps_the_turn(
    runs: RunStore,
) -> None:
    a, b = runs.submit([job("a"), job("b")], user="u")
    assert runs.claim(a, "h1", [0, 1], ["GPU-0", "GPU-1"])
    assert runs.transition(a, L, Q, reason="lease held by another run")
    run = runs.get(a)
    assert run is not None
    assert (run.state, run.attempt, run.host, run.gpus, run.gpu_uuids) == (Q, 1, None, (), ())
    assert run.reason == "lease held by another run"
    assert [r.id for r in runs.queued()] == [a, b]


def test_claim_records_placement_and_never_books_a_gpu_twice(runs: RunStore) -> None:
    a, b, c = runs.submit([job("a"), job("b"), job("c")], user="u")
    assert runs.claim(a, "h1", [0, 1], ["GPU-a", "GPU-b"])
    assert not runs.claim(a, "h2", [0], ["GPU-x"])
    assert not runs.claim(b, "h1", [1, 2], ["GPU-b", "GPU-c"])  # GPU 1 is a's
    assert runs.claim(b, "h2", [1], ["GPU-y"])  # same index, other host: fine
    assert runs.claim(c, "h1", [2], ["GPU-c"])
    with pytest.raises(ValueError):
        runs.claim(c, "h1", [3, 3], ["x", "y"])
    assert runs.busy_gpus() == {("h1", 0), ("h1", 1), ("h2", 1), ("h1", 2)}
    assert [r.id for r in runs.running_on("h1")] == sorted([a, c])
    assert runs.transition(a, L, R)
    assert {r.id for r in runs.active()} == {a, b, c}
    assert runs.transition(a, R, RunState.SUCCEEDED, exit_code=0)
    assert runs.busy_gpus() == {("h2", 1), ("h1", 2)}


def test_request_cancel_ends_a_queued_run_and_flags_an_active_one(
    runs: RunStore,
) -> None:
    q, r, launching, done = runs.submit([job(n) for n in "qrld"], user="u")
    cancelled = runs.request_cancel(q)
    assert cancelled.state is RunState.CANCELLED and cancelled.ended_at is not None
    runs.claim(r, "h", [0], ["G0"])
    runs.transition(r, L, R)
    runs.claim(launching, "h", [1], ["G1"])
    runs.claim(done, "h", [2], ["G2"])
    runs.transition(done, L, RunState.SUCCEEDED, exit_code=0)
    flagged = runs.request_cancel(r)
    assert flagged.state is R and flagged.cancel_requested
    assert runs.request_cancel(done).state is RunState.SUCCEEDED
    runs.request_cancel(launching)
    assert {x.id for x in runs.cancel_requested()} == {r, launching}
    # The launch is refused after the cancel: the run ends instead of queueing again.
    assert runs.transition(launching, L, Q)
    ended = runs.get(launching)
    assert ended is not None and ended.state is RunState.CANCELLED
    assert not ended.cancel_requested and ended.attempt == 0
    assert runs.transition(r, R, RunState.CANCELLED, exit_code=143)
    assert runs.cancel_requested() == []
    with pytest.raises(RunNotFoundError, match="labdeck ls"):
        runs.request_cancel("rmissing")


def test_retry_and_delete_only_finished_runs(runs: RunStore) -> None:
    a, b = runs.submit([job("a"), job("b")], user="u")
    with pytest.raises(RunStateError, match="only a finished run"):
        runs.retry(a)
    with pytest.raises(RunStateError, match="cancel it first"):
        runs.delete(a)
    runs.claim(a, "h", [0], ["G0"])
    runs.transition(a, L, R, pid=7)
    runs.transition(a, R, RunState.LOST, reason="host rebooted")
    again = runs.retry(a)
    assert (again.state, again.attempt, again.host, again.pid, again.reason) == (
        Q, 1, None, None, "")
    assert [r.id for r in runs.queued()] == [a, b]  # a lost run keeps its turn
    runs.request_cancel(b)
    runs.delete(b)
    assert runs.get(b) is None and runs.count() == 1
    with pytest.raises(RunNotFoundError):
        runs.delete(b)


def test_move_reorders_within_a_priority_only(runs: RunStore) -> None:
    ids = runs.submit([job(f"n{i}") for i in range(5)] + [job("top", priority=1)], user="u")
    names = lambda: [r.name for r in runs.queued()]  # noqa: E731
    assert runs.move(ids[3], -2) == -2
    assert names() == ["top", "n0", "n3", "n1", "n2", "n4"]
    assert runs.move(ids[0], +10) == 4
    assert names() == ["top", "n3", "n1", "n2", "n4", "n0"]
    assert runs.move(ids[3], -5) == 0  # already first of its priority; never passes "top"
    assert runs.move(ids[5], 1) == 0
    seqs = [r.seq for r in runs.queued()]
    assert len(set(seqs)) == len(seqs)
    runs.claim(ids[1], "h", [0], ["G"])
    with pytest.raises(RunStateError):
        runs.move(ids[1], 1)


def test_reservations(runs: RunStore) -> None:
    runs.reserve("h1", 0, note="manual debugging")
    runs.reserve("h1", 3)
    runs.reserve("h1", 0, note="still debugging")
    assert runs.reserved() == {("h1", 0), ("h1", 3)}
    assert runs.reservations() == [("h1", 0, "still debugging"), ("h1", 3, "")]
    runs.unreserve("h1", 0)
    runs.unreserve("h9", 9)  # nothing there: no error
    assert runs.reserved() == {("h1", 3)}


def test_paging_through_100k_runs_walks_indexes(runs: RunStore, path: Path) -> None:
    (template,) = runs.submit([job("template")], user="u")
    # 100k rows copied from a submitted one in SQL: submitting them one by one would only
    # make the test slow. Ids keep the id format and sort in insertion order.
    with runs._store.transaction() as db:
        db.conn.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
            INSERT INTO runs (id, name, spec, state, user, priority, created_at, seq,
                              tags, params, queued_at, updated_at)
            SELECT printf('r%012d', i), 'j' || i, spec,
                   CASE i % 3 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'failed' ELSE 'queued' END,
                   user, i % 4, created_at, seq + i, tags, params, queued_at, updated_at
            FROM n, runs WHERE runs.id = ?
            """,
            [template],
        )
    runs.request_cancel(template)
    runs.delete(template)
    with sqlite3.connect(path) as conn:
        for sql, args in [
            ("SELECT * FROM runs ORDER BY id DESC LIMIT 100 OFFSET 99000", []),
            ("SELECT * FROM runs WHERE state IN (?) ORDER BY id DESC LIMIT 100 OFFSET 3000",
             ["failed"]),
            ("SELECT * FROM runs WHERE state = 'queued' ORDER BY priority DESC, seq ASC", []),
        ]:
            steps = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            assert not any("TEMP B-TREE" in step or step == "SCAN runs" for step in steps), steps
    started = time.perf_counter()
    last_page = runs.list_runs(limit=100, offset=99_950)
    page_ms = (time.perf_counter() - started) * 1000
    assert [r.name for r in last_page] == [f"j{i}" for i in range(50, 0, -1)]
    started = time.perf_counter()
    failed_page = runs.list_runs([RunState.FAILED], limit=50, offset=33_300)
    filtered_ms = (time.perf_counter() - started) * 1000
    assert [r.name for r in failed_page] == [f"j{i}" for i in range(100, 0, -3)]
    assert runs.count([RunState.SUCCEEDED, RunState.FAILED]) == 66_667
    assert runs.count([]) == 0 and runs.count() == 100_000
    queue = runs.queued()
    assert len(queue) == 33_333
    assert [(r.priority, r.seq) for r in queue] == sorted(
        ((r.priority, r.seq) for r in queue), key=lambda k: (-k[0], k[1]))
    # Generous bounds for a busy 2-core machine; typical figures are a few ms.
    assert page_ms < 250 and filtered_ms < 250, (page_ms, filtered_ms)


def test_threads_racing_for_claims_each_run_goes_to_exactly_one(path: Path) -> None:
    stores = [Store.open(path) for _ in range(3)]
    ids = RunStore(stores[0]).submit([job(f"t{i}") for i in range(100)], user="u")
    won: list[list[str]] = [[] for _ in stores]

    def claimer(k: int) -> None:
        rs = RunStore(stores[k % len(stores)])
        for rid in ids:
            if rs.claim(rid, f"host-{rid}", [0], [f"GPU-{k}"]):
                won[k].append(rid)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert sorted(rid for w in won for rid in w) == sorted(ids)


