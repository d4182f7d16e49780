"""The runs table's reads on a real SQLite file: filters, sorts, rows with the metrics of
their current attempt, change polling and the menus' choices."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runs_filter import HOST_RUN_ID_SQL, RunsQuery, SortKey
from app.core.queue.runstore import RunStore
from app.core.runs_catalog import CHUNK, RunsCatalog
from app.core.store import Store

Q, L, R = RunState.QUEUED, RunState.LAUNCHING, RunState.RUNNING


@dataclasses.dataclass
class World:
    store: Store
    runs: RunStore
    catalog: RunsCatalog
    ids: dict[str, str]  # name → run id


def spec(name: str, tags: list[str] | None = None, **params: Any) -> dict[str, Any]:
    return {"name": name, "tags": tags or [], "params": params}


def put_metric(store: Store, key: str, name: str, value: float) -> None:
    with store.transaction() as db:
        db.conn.execute(
            "INSERT INTO metric_series (run_id, name, count, first_step, last_step, "
            "last_value, min_value, max_value) VALUES (?, ?, 1, 0, 0, ?, ?, ?)",
            [key, name, value, value, value])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Four runs, oldest first: a queued resnet, a bert that succeeded on gpu-a, a vit
    that failed on gpu-b and runs again there as attempt 1, and bob's queued 100%_ run."""
    store = Store.open(tmp_path / "labdeck.sqlite3")
    runs = RunStore(store)
    names = ("resnet", "bert", "vit")
    ids = dict(zip(names, runs.submit([
        spec("resnet", ["paper"], lr=0.1),
        spec("bert", ["paper", "final"], lr=0.01, batch=32),
        spec("vit", lr=0.3),
    ], user="alice"), strict=True))
    (ids["odd"],) = runs.submit([spec("100%_ run")], user="bob")
    runs.claim(ids["bert"], "gpu-a", [0], ["GPU-0"])
    runs.transition(ids["bert"], L, R, started_at=100.0)
    runs.transition(ids["bert"], R, RunState.SUCCEEDED, ended_at=160.0, exit_code=0)
    runs.claim(ids["vit"], "gpu-b", [1], ["GPU-1"])
    runs.transition(ids["vit"], L, R, started_at=200.0)
    runs.transition(ids["vit"], R, RunState.FAILED, ended_at=230.0, exit_code=1)
    runs.retry(ids["vit"])
    runs.claim(ids["vit"], "gpu-b", [1], ["GPU-1"])
    runs.transition(ids["vit"], L, R, started_at=300.0)
    put_metric(store, ids["bert"], "loss", 0.5)
    put_metric(store, ids["vit"], "loss", 9.0)  # the failed first attempt
    put_metric(store, f"{ids['vit']}-a1", "loss", 0.2)
    yield World(store, runs, RunsCatalog(store, MetricStore(store)), ids)
    store.close()


def names(world: World, query: RunsQuery) -> list[str]:
    by_id = {v: k for k, v in world.ids.items()}
    return [by_id[i] for i in world.catalog.ids(query)]


def test_the_sql_attempt_id_is_the_run_records_one(world: World) -> None:
    conn = world.store.db.conn
    for name in ("resnet", "vit"):
        run = world.runs.get(world.ids[name])
        assert run is not None
        (sql_id,) = conn.execute(f"SELECT {HOST_RUN_ID_SQL} FROM runs WHERE id = ?",
                                 [run.id]).fetchone()
        assert sql_id == run.host_run_id
    assert world.runs.get(world.ids["vit"]).host_run_id.endswith("-a1")  # type: ignore[union-attr]


def test_default_order_is_newest_first_and_limit_takes_the_head(world: World) -> None:
    assert names(world, RunsQuery()) == ["odd", "vit", "bert", "resnet"]
    assert world.catalog.ids(RunsQuery(), limit=2) == [world.ids["odd"], world.ids["vit"]]
    assert names(world, RunsQuery(descending=False)) == ["resnet", "bert", "vit", "odd"]


def test_free_text_and_tokens_filter_and_like_wildcards_are_literal(world: World) -> None:
    assert names(world, RunsQuery(text="BERT")) == ["bert"]
    assert names(world, RunsQuery(text="100%_")) == ["odd"]
    assert names(world, RunsQuery(text="%")) == ["odd"]
    assert names(world, RunsQuery(text="host:gpu-b")) == ["vit"]
    assert names(world, RunsQuery(text="user:bob")) == ["odd"]
    assert names(world, RunsQuery(text="tag:final")) == ["bert"]
    assert names(world, RunsQuery(tag="paper")) == ["bert", "resnet"]
    assert names(world, RunsQuery(states=frozenset({"queued"}))) == ["odd", "resnet"]
    # A state token narrows the filter bar's states; states that exclude each other
    # match nothing.
    assert names(world, RunsQuery(text="state:queued",
                                  states=frozenset({"queued", "running"}))) == ["odd", "resnet"]
    assert names(world, RunsQuery(text="state:failed", states=frozenset({"queued"}))) == []


def test_sorts_by_metric_of_the_current_attempt_param_and_state(world: World) -> None:
    by_loss = RunsQuery(sort=SortKey("metric", "loss"), descending=False)
    # NULLs (no such series) come last in either direction.
    assert names(world, by_loss)[:2] == ["vit", "bert"]
    assert names(world, dataclasses.replace(by_loss, descending=True))[:2] == ["bert", "vit"]
    by_lr = RunsQuery(sort=SortKey("param", "lr"), descending=True)
    assert names(world, by_lr) == ["vit", "resnet", "bert", "odd"]
    by_state = RunsQuery(sort=SortKey("state"), descending=False)
    assert names(world, by_state) == ["resnet", "odd", "vit", "bert"]  # queue order first
    unknown = RunsQuery(sort=SortKey("no such sort"))
    assert names(world, unknown) == names(world, RunsQuery())


def test_rows_carry_fields_and_the_current_attempts_metrics(world: World) -> None:
    vit, bert = world.ids["vit"], world.ids["bert"]
    rows = world.catalog.rows([vit, bert, "rgone0000000", vit])
    assert set(rows) == {vit, bert}
    row = rows[vit]
    assert (row.state, row.host, row.gpus, row.attempt) == (R, "gpu-b", (1,), 1)
    assert row.host_run_id == f"{vit}-a1" and row.metrics == {"loss": 0.2}
    assert rows[bert].tags == ("paper", "final") and rows[bert].params == {
        "lr": 0.01, "batch": 32}
    assert rows[bert].exit_code == 0 and rows[bert].note == "" and not rows[bert].archived
    assert world.catalog.metric_values([row]) == {vit: {"loss": 0.2}}


def test_rows_read_more_ids_than_one_in_list_holds(world: World) -> None:
    many = world.runs.submit([spec(f"job{i}") for i in range(CHUNK + 20)], user="alice")
    assert set(world.catalog.rows(many)) == set(many)


def test_change_token_and_changed_since_see_every_write(world: World) -> None:
    token = world.catalog.change_token()
    assert token.count == 4 and world.catalog.change_token() == token
    assert world.runs.request_cancel(world.ids["odd"])
    after = world.catalog.change_token()
    assert after != token
    assert world.ids["odd"] in world.catalog.changed_since(after.last_update)


def test_menu_choices_come_from_recent_runs(world: World) -> None:
    assert world.catalog.filter_choices() == (["gpu-a", "gpu-b"], ["final", "paper"])
    assert world.catalog.column_choices() == (["loss"], ["batch", "lr"])
