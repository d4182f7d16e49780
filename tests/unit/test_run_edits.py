"""The runs table's edits on a real SQLite file: tags, note, archive and delete, each
undone exactly, and each seen by the table's change polling."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runs_filter import RunsQuery
from app.core.queue.runstore import RunStore
from app.core.run_edits import Annotations, RunEdits
from app.core.runs_catalog import RunsCatalog
from app.core.store import Store


@dataclasses.dataclass
class World:
    store: Store
    runs: RunStore
    edits: RunEdits
    catalog: RunsCatalog
    done: str  # a succeeded run
    queued: list[str]  # two queued runs, tagged "exp1" and ("exp1", "keep")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = Store.open(tmp_path / "labdeck.sqlite3")
    runs = RunStore(store)
    a, b, done = runs.submit([
        {"name": "a", "tags": ["exp1"]},
        {"name": "b", "tags": ["exp1", "keep"]},
        {"name": "done"},
    ], user="alice")
    runs.claim(done, "gpu-a", [0], ["GPU-0"])
    runs.transition(done, RunState.LAUNCHING, RunState.SUCCEEDED, exit_code=0)
    yield World(store, runs, RunEdits(store), RunsCatalog(store, MetricStore(store)),
                done, [a, b])
    store.close()


def test_tags_replace_the_old_common_ones_and_undo_puts_them_back(world: World) -> None:
    edits, (a, b) = world.edits, world.queued
    before = edits.set_tags([a, b, "rgone0000000"], [" paper ", "final", "paper", ""],
                            replace=["exp1"])
    assert before == {a: ("exp1",), b: ("exp1", "keep")}
    now = edits.annotations([a, b])
    assert now[a].tags == ("paper", "final") and now[b].tags == ("keep", "paper", "final")
    edits.restore_tags(before)
    assert {i: x.tags for i, x in edits.annotations([a, b]).items()} == before


def test_note_and_its_undo(world: World) -> None:
    edits, (a, b) = world.edits, world.queued
    edits.set_note([a], "first")
    before = edits.set_note([a, b], "diverged\nsee the log")
    assert before == {a: "first", b: ""}
    assert edits.annotations([b]) == {b: Annotations(("exp1", "keep"), "diverged\nsee the log",
                                                     False)}
    edits.restore_notes(before)
    assert {i: x.note for i, x in edits.annotations([a, b]).items()} == before


def test_archive_hides_runs_from_the_default_listing_and_the_poll_sees_it(
        world: World) -> None:
    edits, catalog, (a, _b) = world.edits, world.catalog, world.queued
    token = catalog.change_token()
    edits.set_archived([a], True)
    assert catalog.change_token() != token
    assert a not in catalog.ids(RunsQuery())
    assert a in catalog.ids(RunsQuery(show_archived=True))
    assert edits.annotations([a])[a].archived
    edits.set_archived([a], False)
    assert a in catalog.ids(RunsQuery())


def test_delete_takes_only_finished_runs_and_restore_puts_them_back_as_stored(
        world: World) -> None:
    edits, runs, (a, _b) = world.edits, world.runs, world.queued
    stored = runs.get(world.done)
    taken = edits.delete_finished([a, world.done, "rgone0000000"])
    assert [row["id"] for row in taken] == [world.done]
    assert runs.get(world.done) is None and runs.get(a) is not None
    token = world.catalog.change_token()
    edits.restore_deleted(taken)
    assert runs.get(world.done) == stored
    assert world.catalog.change_token() != token
    edits.restore_deleted(taken)  # twice (a redo raced an undo) changes nothing
    assert world.catalog.change_token().count == 3
