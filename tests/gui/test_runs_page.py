"""The Runs page against a real store: opening runs by mouse and keyboard, dragging them,
and every action doing what it says to the runs in the store (and undo putting it back)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from make_runs_screenshot import render
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QMainWindow

from app.core.events import EventBus, PointsStored, RunChanged
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.run_edits import RunEdits
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.runs.actions import RunsActions, ssh_command
from app.ui.runs.model import RUN_IDS_MIME
from app.ui.runs.page import RunsPage, install_runs_page
from app.ui.shell.selfcheck import is_blank
from ssh_backend.hostspec import HostSpec
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.runs_data import fill_runs

pytestmark = pytest.mark.gui
GPU_A = HostSpec(name="gpu-a", hostname="10.0.0.5", port=2222, user="alice")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = Store.open(tmp_path / "labdeck.sqlite3")
    store.add_host(GPU_A)
    fill_runs(store, 60, seed=5)
    ctx = AppContext(store, RunStore(store), MetricStore(store))
    yield ctx
    store.close()


@pytest.fixture
def page(qtbot, world):
    clones: list[dict] = []
    page = RunsPage(world)
    page.run_actions = RunsActions(page, world, clones.append)
    page.clones = clones  # type: ignore[attr-defined]
    qtbot.addWidget(page)
    page.resize(1280, 800)
    page.show()
    qtbot.waitUntil(lambda: page.model.is_loaded() and page.model.rowCount() == 60,
                    timeout=10000)
    yield page
    page.stop()


def select(page: RunsPage, rows: list[int]) -> list[str]:
    sm = page.view.selectionModel()
    sm.clearSelection()
    for r in rows:
        sm.select(page.model.index(r, 0), QItemSelectionModel.SelectionFlag.Select
                  | QItemSelectionModel.SelectionFlag.Rows)
    return [page.model.run_id(r) for r in sorted(rows)]


def row_where(page: RunsPage, state: RunState) -> int:
    model = page.model
    return next(r for r in range(model.rowCount())
                if (row := model.run_row(model.run_id(r))) and row.state is state)


def wait_state(qtbot, ctx: AppContext, run_id: str, state: RunState) -> None:
    qtbot.waitUntil(lambda: ctx.runstore.get(run_id).state is state, timeout=10000)


def test_click_then_double_click_opens_that_run(qtbot, page) -> None:
    center = page.view.visualRect(page.model.index(4, 0)).center()
    qtbot.mouseClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=center)
    with qtbot.waitSignal(page.open_runs_requested, timeout=3000) as blocker:
        qtbot.mouseDClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert blocker.args == [[page.model.run_id(4)]]


def test_enter_on_three_selected_rows_opens_the_three(qtbot, page) -> None:
    ids = select(page, [2, 5, 9])
    page.view.setFocus()
    with qtbot.waitSignal(page.open_runs_requested, timeout=3000) as blocker:
        qtbot.keyClick(page.view, Qt.Key.Key_Return)
    assert blocker.args == [ids]
    assert page.selected_run_ids() == ids


def test_double_click_inside_a_selection_opens_the_whole_selection(qtbot, page) -> None:
    ids = select(page, [1, 3, 6])
    center = page.view.visualRect(page.model.index(3, 2)).center()
    qtbot.mouseClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=center)
    with qtbot.waitSignal(page.open_runs_requested, timeout=3000) as blocker:
        qtbot.mouseDClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert blocker.args == [ids]
    assert page.selected_run_ids() == ids


def test_drag_data_is_the_selected_run_ids(page) -> None:
    ids = select(page, [7, 0, 12])
    data = page.model.mimeData(page.view.selectionModel().selectedIndexes())
    assert data.formats() == [RUN_IDS_MIME]
    assert json.loads(bytes(data.data(RUN_IDS_MIME)).decode()) == ids
    assert page.view.dragEnabled()


def test_cancel_requeue_and_clone(qtbot, page, world) -> None:
    actions = page.run_actions
    queued = page.model.run_id(row_where(page, RunState.QUEUED))
    select(page, [page.model.row_of(queued)])
    page.view.setFocus()
    page.activateWindow()
    qtbot.keyClick(page.view, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    wait_state(qtbot, world, queued, RunState.CANCELLED)
    row = page.model.row_of(queued)
    qtbot.waitUntil(lambda: page.model.index(row, 1).data() == "cancelled", timeout=10000)

    actions.update_enabled()
    assert actions.requeue.isEnabled() and not actions.cancel.isEnabled()
    actions.requeue.trigger()
    wait_state(qtbot, world, queued, RunState.QUEUED)
    assert world.runstore.get(queued).attempt == 1

    done = page.model.run_id(row_where(page, RunState.SUCCEEDED))
    select(page, [page.model.row_of(done)])
    actions.clone.trigger()
    run = world.runstore.get(done)
    assert len(page.clones) == 1
    assert page.clones[0]["name"] == run.name
    assert page.clones[0]["params"] == run.params and page.clones[0]["argv"] == run.spec["argv"]


def test_move_up_and_down_the_queue(qtbot, page, world) -> None:
    runstore = world.runstore
    order = [r.id for r in runstore.queued()]
    last = order[-1]
    select(page, [page.model.row_of(last)])
    page.view.setFocus()
    page.activateWindow()
    qtbot.keyClick(page.view, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: [r.id for r in runstore.queued()][-2] == last, timeout=10000)
    page.run_actions.move_down.trigger()
    qtbot.waitUntil(lambda: [r.id for r in runstore.queued()] == order, timeout=10000)
    # Sorted by state, the table shows the queue order and follows the move.
    with qtbot.waitSignal(page.model.query_applied, timeout=10000):
        page.view.sortByColumn(page.model.column_of("base", "state"),
                               Qt.SortOrder.AscendingOrder)
    assert [page.model.run_id(r) for r in range(len(order))] == order
    page.run_actions.move_runs([last], -2)
    qtbot.waitUntil(lambda: page.model.run_id(len(order) - 3) == last, timeout=10000)
    assert page.selected_run_ids() == [last]  # the selection moved with the row


def test_tags_and_note_through_their_dialogs_with_undo(qtbot, page, world) -> None:
    store, actions = world.store, page.run_actions
    ids = select(page, [0, 1])
    edits = RunEdits(store)
    before = edits.annotations(ids)
    actions.ask_tags()
    actions.last_dialog.setTextValue("paper, final-v2")
    actions.last_dialog.accept()
    qtbot.waitUntil(lambda: all("final-v2" in a.tags for a in
                                edits.annotations(ids).values()), timeout=10000)
    row = page.model.row_of(ids[0])
    col = page.model.column_of("base", "tags")
    qtbot.waitUntil(lambda: "final-v2" in page.model.index(row, col).data(), timeout=10000)

    actions.ask_note()
    actions.last_dialog.setTextValue("diverged after warmup\nsee wandb")
    actions.last_dialog.accept()
    qtbot.waitUntil(lambda: edits.annotations(ids)[ids[1]].note
                    == "diverged after warmup\nsee wandb", timeout=10000)
    col = page.model.column_of("base", "note")
    qtbot.waitUntil(lambda: page.model.index(row, col).data() == "diverged after warmup",
                    timeout=10000)

    actions.undo.trigger()  # the note
    actions.undo.trigger()  # the tags
    qtbot.waitUntil(lambda: edits.annotations(ids) == before, timeout=10000)


def test_archive_hides_runs_until_asked_for(qtbot, page, world) -> None:
    ids = select(page, [3, 4])
    page.run_actions.archive.trigger()
    qtbot.waitUntil(lambda: page.model.rowCount() == 58, timeout=10000)
    assert all(page.model.row_of(i) is None for i in ids)
    page.archived_box.setChecked(True)
    qtbot.waitUntil(lambda: page.model.rowCount() == 60, timeout=10000)
    page.run_actions.undo.trigger()
    qtbot.waitUntil(lambda: not any(a.archived for a in
                                    RunEdits(world.store).annotations(ids).values()),
                    timeout=10000)


def test_delete_takes_only_finished_runs_and_undo_restores_them(qtbot, page, world) -> None:
    runstore = world.runstore
    finished = page.model.run_id(row_where(page, RunState.SUCCEEDED))
    running = page.model.run_id(row_where(page, RunState.RUNNING))
    record = runstore.get(finished)
    select(page, [page.model.row_of(finished), page.model.row_of(running)])
    page.view.setFocus()
    page.activateWindow()
    qtbot.keyClick(page.view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: runstore.get(finished) is None, timeout=10000)
    qtbot.waitUntil(lambda: page.model.row_of(finished) is None, timeout=10000)
    assert runstore.get(running).state is RunState.RUNNING
    assert "1 still active kept" in page.last_message
    page.run_actions.undo.trigger()
    qtbot.waitUntil(lambda: runstore.get(finished) is not None, timeout=10000)
    assert runstore.get(finished) == record
    qtbot.waitUntil(lambda: page.model.row_of(finished) is not None, timeout=10000)


def test_copy_ssh_command_puts_it_on_the_clipboard(qtbot, page, world) -> None:
    model = page.model
    row = next(r for r in range(model.rowCount())
               if (run := model.run_row(model.run_id(r))) and run.host == "gpu-a")
    run_id = select(page, [row])[0]
    page.run_actions.copy_ssh.trigger()
    expected = f"ssh -t -p 2222 alice@10.0.0.5 'cd ~/.labdeck/runs/{run_id} && exec \"$SHELL\" -l'"
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == expected, timeout=10000)


def test_ssh_command_quotes_what_it_passes() -> None:
    spec = HostSpec(name="lab box", ssh_alias="lab box", proxy_jump=("bob@gw:2200", "x@y"),
                    key_filename="/home/me/my keys/id")
    assert ssh_command(spec, "rabc-a1") == (
        "ssh -t -J bob@gw:2200,x@y -i '/home/me/my keys/id' 'lab box' "
        "'cd ~/.labdeck/runs/rabc-a1 && exec \"$SHELL\" -l'")
    assert ssh_command(HostSpec(name="me", local=True), "rabc") == (
        'cd ~/.labdeck/runs/rabc && exec "$SHELL" -l')


class _Events:
    """Publishes from its own thread, as the dispatcher and the ingestor do."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1

    def fire(self, *args) -> None:
        event = RunChanged(*args) if len(args) == 1 else PointsStored(*args)
        thread = threading.Thread(target=self.bus.publish, args=(event,),
                                  name="labdeck-test-events")
        thread.start()
        thread.join()


def test_install_adds_the_tab_the_menu_and_live_updates(qtbot, world) -> None:
    window = QMainWindow()
    window.add_page = lambda widget, title: window.setCentralWidget(widget)  # type: ignore
    window.closed = SimpleNamespace(connect=lambda fn: None)  # type: ignore[attr-defined]
    window.menuBar().addMenu("&File")
    window.menuBar().addMenu("&Help")
    qtbot.addWidget(window)
    bus = EventBus()
    dispatcher, ingestor = _Events(bus), _Events(bus)
    ctx = AppContext(world.store, world.runstore, world.metricstore,
                     SimpleNamespace(dispatcher=dispatcher, ingestor=ingestor,  # type: ignore
                                     bus=bus))
    opened: list[list[str]] = []
    page = install_runs_page(window, ctx, opened.append, lambda spec: None)
    try:
        assert window.centralWidget() is page
        menus = [a.text() for a in window.menuBar().actions()]
        assert menus == ["&File", "&Runs", "&Help"]
        assert bus.subscribers() == 1
        qtbot.waitUntil(lambda: page.model.rowCount() == 60, timeout=10000)
        page.set_extra_columns(["train/loss"], [])

        queued = page.model.run_id(row_where(page, RunState.QUEUED))
        world.runstore.request_cancel(queued)
        dispatcher.fire(queued)
        row, state_col = page.model.row_of(queued), page.model.column_of("base", "state")
        qtbot.waitUntil(lambda: page.model.index(row, state_col).data() == "cancelled",
                        timeout=10000)

        running = page.model.run_id(row_where(page, RunState.RUNNING))
        point = MetricPoint("train/loss", 10**6, time.time(), 0.0042)
        world.metricstore.ingest([("gpu-a", TailChunk(running, "metrics.jsonl", 1, 0, 50,
                                                       points=(point,)))])
        ingestor.fire(running, frozenset({"metrics"}))
        row, col = page.model.row_of(running), page.model.column_of("metric", "train/loss")
        qtbot.waitUntil(lambda: page.model.index(row, col).data() == "0.0042", timeout=10000)

        select(page, [0, 1])
        page.run_actions.open.trigger()
        assert opened == [[page.model.run_id(0), page.model.run_id(1)]]
    finally:
        page.stop()
    assert bus.subscribers() == 0


def test_screenshot_renders(qtbot, tmp_path: Path) -> None:
    image = QImage(str(render(tmp_path)))
    assert (image.width(), image.height()) == (1280, 800)
    assert not is_blank(image)
