"""The runs table model over a real store of 2,000 runs: Qt's model tester, sort and
filter against the store's own records, and updates that never reset the model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.core.events import EventBus, RunChanged
from app.core.jobs.jobspec import JobSpec
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runs_filter import RunsQuery, SortKey
from app.core.queue.runstore import RunStore
from app.core.runs_catalog import RunsCatalog
from app.core.store import Store
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.runs.cache import BLOCK
from app.ui.runs.diff import plan_changes
from app.ui.runs.model import RUN_IDS_MIME, RunsTableModel
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.runs_data import fill_runs

pytestmark = pytest.mark.gui
N = 2000


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2k-run store file, copied for each test (filling it is the slow part)."""
    path = tmp_path_factory.mktemp("runs") / "labdeck.sqlite3"
    with Store.open(path) as store:
        fill_runs(store, N, seed=11)
    return path


@pytest.fixture
def world(filled: Path, tmp_path: Path, qtbot):
    path = tmp_path / "labdeck.sqlite3"
    path.write_bytes(filled.read_bytes())
    store = Store.open(path)
    worker = DataWorker("labdeck-runs-test")
    # No poll and no duration tick: each test says when the store is read again, and
    # the model tester's full walk (2k rows, ~1 s) runs only on the signals tested.
    model = RunsTableModel(RunsCatalog(store, MetricStore(store)), worker, poll_ms=0,
                           tick_ms=0)
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.set_query(RunsQuery())
    yield store, RunStore(store), model
    model.stop()
    worker.stop()
    store.close()


def load_all(qtbot, model: RunsTableModel) -> None:
    """Ask for every row (as a view scrolling through would) until all are read."""
    def done() -> bool:
        missing = [r for r in range(model.rowCount())
                   if model.index(r, 0).data() == "…"]
        return not missing
    qtbot.waitUntil(done, timeout=20000)


class Recorder:
    def __init__(self, model: RunsTableModel) -> None:
        self.events: list[tuple] = []
        model.modelReset.connect(lambda: self.events.append(("reset",)))
        model.layoutChanged.connect(lambda *_: self.events.append(("layout",)))
        model.rowsInserted.connect(lambda _p, a, b: self.events.append(("inserted", a, b)))
        model.rowsRemoved.connect(lambda _p, a, b: self.events.append(("removed", a, b)))
        model.dataChanged.connect(lambda tl, br, _r=(): self.events.append(
            ("data", tl.row(), br.row(), tl.column(), br.column())))

    def kinds(self) -> set[str]:
        return {e[0] for e in self.events}


@pytest.mark.qt_log_level_fail("WARNING")
def test_model_passes_qt_model_tester(qtmodeltester, qtbot, world) -> None:
    _store, runstore, model = world
    qtmodeltester.check(model)
    assert model.rowCount() == N and model.columnCount() == 10
    model.set_extra_columns(["train/loss", "val/acc"], ["lr", "batch"])
    model.set_extra_columns(["val/acc"], ["batch"])
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.sort(model.column_of("base", "name"), Qt.SortOrder.AscendingOrder)
    (new,) = runstore.submit([JobSpec(name="tester-new").to_dict()], user="erin")
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.notify_runs_changed([new])
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.set_query(RunsQuery(text="resnet", states=frozenset({"succeeded"})))
    load_all(qtbot, model)  # a few hundred rows: every block read, each a dataChanged


def _expected_order(runstore: RunStore, key, reverse: bool) -> list[str]:
    runs = runstore.list_runs()  # newest first: the tie-break order
    return [r.id for r in sorted(runs, key=key, reverse=reverse)]


def test_sort_by_columns_matches_the_store(qtbot, world) -> None:
    store, runstore, model = world
    runs = runstore.list_runs()
    cases = [
        ("name", False, lambda r: r.name.lower()),
        ("user", True, lambda r: r.user),
        ("started", False, lambda r: r.started_at or 0),
    ]
    for key, descending, python_key in cases:
        order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
        with qtbot.waitSignal(model.query_applied, timeout=10000):
            model.sort(model.column_of("base", key), order)
        shown = [model.run_id(r) for r in range(model.rowCount())]
        if key == "started":  # never-started runs come last, whatever the direction
            started = [r for r in runs if r.started_at is not None]
            waiting = {r.id for r in runs if r.started_at is None}
            assert shown[: len(started)] == [r.id for r in sorted(started, key=python_key)]
            assert set(shown[len(started):]) == waiting
            continue
        # A stable sort of the newest-first list (reverse=True keeps ties in order too)
        # breaks ties by id descending, as the SQL does.
        assert shown == [r.id for r in sorted(runs, key=python_key, reverse=descending)]

    model.set_extra_columns(["train/loss"], [])
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.sort(model.column_of("metric", "train/loss"), Qt.SortOrder.AscendingOrder)
    assert model.query().sort == SortKey("metric", "train/loss")
    first = model.run_id(0)
    values = MetricStore(store).last_values([r.id for r in runs], ["train/loss"])
    assert values[first]["train/loss"] == min(v["train/loss"] for v in values.values())


def test_filters_match_the_store(qtbot, world) -> None:
    _store, runstore, model = world
    runs = runstore.list_runs()

    def shown() -> set[str]:
        return {model.run_id(r) for r in range(model.rowCount())}

    recorder = Recorder(model)
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.set_query(RunsQuery(text="RESNET"))
    assert shown() == {r.id for r in runs if "resnet" in r.name}
    # A new filter: its first block at once, then the rest appended below it.
    assert recorder.events[:2] == [("reset",), ("inserted", BLOCK, model.rowCount() - 1)]
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.set_query(RunsQuery(text="state:failed host:gpu-b"))
    expected = {r.id for r in runs if r.state is RunState.FAILED and r.host == "gpu-b"}
    assert expected and shown() == expected
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.set_query(RunsQuery(tag="paper", states=frozenset({"succeeded", "lost"})))
    expected = {r.id for r in runs if "paper" in r.tags and r.state.value in ("succeeded", "lost")}
    assert expected and shown() == expected
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.set_query(RunsQuery(text="100%_"))  # LIKE wildcards are taken literally
    assert model.rowCount() == 0


def test_state_change_is_one_targeted_data_changed(qtbot, world) -> None:
    _store, runstore, model = world
    queued = [model.run_id(r) for r in range(BLOCK)
              if model.index(r, 1).data() == "queued"]
    run_id = queued[0]
    row = model.row_of(run_id)
    recorder = Recorder(model)
    assert runstore.claim(run_id, "gpu-z", [0], ["GPU-gpu-z-0"])

    # The dispatcher calls its listeners on its own thread.
    bus = EventBus()
    events = EventBridge(bus)
    events.run_changed.connect(lambda event: model.notify_runs_changed([event.run_id]))
    thread = threading.Thread(target=bus.publish, args=(RunChanged(run_id),),
                              name="labdeck-test-dispatch")
    with qtbot.waitSignal(model.dataChanged, timeout=10000):
        thread.start()
    thread.join()
    assert recorder.kinds() == {"data"}, recorder.events
    assert recorder.events == [("data", row, row, 0, model.columnCount() - 1)]
    assert model.index(row, 1).data() == "launching"
    assert model.index(row, 2).data() == "gpu-z:0"


def test_new_and_deleted_runs_are_row_inserts_and_removals(qtbot, world) -> None:
    _store, runstore, model = world
    recorder = Recorder(model)
    ids = runstore.submit([JobSpec(name=f"new-{i}").to_dict() for i in range(3)], user="erin")
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.request_refresh()  # the poll's path: nothing told us which runs changed
    assert ("inserted", 0, 2) in recorder.events
    assert "reset" not in recorder.kinds() and "layout" not in recorder.kinds()
    assert [model.run_id(r) for r in range(3)] == list(reversed(ids))
    assert model.rowCount() == N + 3

    recorder.events.clear()
    victim = model.run_id(40)
    runstore.request_cancel(ids[1])
    runstore.delete(ids[1])
    with qtbot.waitSignal(model.query_applied, timeout=10000):
        model.request_refresh()
    assert recorder.kinds() <= {"removed", "data"}
    assert ("removed", 1, 1) in recorder.events
    assert model.rowCount() == N + 2 and model.row_of(victim) == 39


def test_metric_values_update_only_metric_cells(qtbot, world) -> None:
    store, _runstore, model = world
    model.set_extra_columns(["train/loss"], ["lr"])
    col = model.column_of("metric", "train/loss")
    row = next(r for r in range(BLOCK) if model.index(r, 1).data() == "running")
    run_id = model.run_id(row)
    recorder = Recorder(model)
    point = MetricPoint("train/loss", 999_999, 1.7e9, 0.0123)
    MetricStore(store).ingest([("gpu-a", TailChunk(run_id, "metrics.jsonl", 1, 0, 60,
                                                   points=(point,)))])
    with qtbot.waitSignal(model.dataChanged, timeout=10000):
        model.notify_metrics([run_id])
    assert recorder.events == [("data", row, row, col, col)]
    assert model.index(row, col).data() == "0.0123"


def test_rows_far_down_are_read_on_demand(qtbot, world) -> None:
    _store, runstore, model = world
    row = N - 5
    assert model.index(row, 0).data() == "…"
    qtbot.waitUntil(lambda: model.index(row, 0).data() != "…", timeout=10000)
    run = runstore.get(model.run_id(row))
    assert model.index(row, 0).data() == run.name
    # The first block (read with the query) and the last one, which holds the row asked
    # for (the block after it, read ahead, does not exist).
    assert model.cached_count() == BLOCK + (N - row // BLOCK * BLOCK)
    middle = N // 2
    model.index(middle, 0).data()
    qtbot.waitUntil(lambda: model.index(middle, 0).data() != "…", timeout=10000)
    ahead = (middle // BLOCK + 1) * BLOCK
    assert model.run_row(model.run_id(ahead)) is not None  # read ahead
    assert model.run_row(model.run_id(ahead + BLOCK)) is None  # but no further


def test_drag_carries_the_run_ids(world) -> None:
    _store, _runstore, model = world
    indexes = [model.index(r, c) for r in (3, 1, 7) for c in (0, 2)]
    data = model.mimeData(indexes)
    assert model.mimeTypes() == [RUN_IDS_MIME]
    assert json.loads(bytes(data.data(RUN_IDS_MIME)).decode()) == [
        model.run_id(1), model.run_id(3), model.run_id(7)]


@pytest.mark.parametrize(("old", "new", "kind"), [
    ("abcdef", "abcdef", "same"),
    ("abcdef", "xyabcdef", "ranges"),
    ("abcdef", "acdf", "ranges"),
    ("abcdef", "xacdfz", "ranges"),
    ("abcdef", "bacdef", "ranges"),
])
def test_plan_turns_old_rows_into_new(old: str, new: str, kind: str) -> None:
    plan = plan_changes(list(old), list(new))
    assert plan.kind == kind
    rows = list(old)
    for first, last in reversed(plan.removed):
        del rows[first:last + 1]
    if plan.reordered:
        rows = list(plan.reordered)
    for first, last in plan.inserted:
        rows[first:first] = list(new[first:last + 1])
    assert rows == list(new)
