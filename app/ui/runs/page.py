"""The Runs page: a filter bar over the runs table, the column chooser, and how a user
opens runs from it (double-click, Enter, drag). ``install_runs_page`` adds it to the
main window as the "Runs" tab and wires it to the Lab's run events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QMenu,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.events import METRICS, PointsStored, RunChanged
from app.core.queue.runs import FINISHED, RunState
from app.core.runs_catalog import RunsCatalog
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.common.plain_text import PlainLabel, action_text, display_text
from app.ui.runs.actions import RunsActions
from app.ui.runs.model import RUN_ID_ROLE, RunsTableModel

SETTINGS_KEY = "runs_table.columns"
FILTER_DELAY_MS = 200
_STATE_CHOICES: list[tuple[str, frozenset[str]]] = [
    ("All states", frozenset()),
    ("Active", frozenset({"queued", "launching", "running"})),
    ("Finished", frozenset(s.value for s in FINISHED)),
] + [(s.value.capitalize(), frozenset({s.value})) for s in RunState]
# State is sized for its longest word (succeeded, launching), not for the first rows.
_WIDTHS = {"name": 220, "state": 112, "reason": 300, "tags": 120, "note": 120}


class RunsView(QTableView):
    """The table: Enter and double-click open the selection; a double-click on one of
    several selected rows keeps them all (the first click would leave only that one)."""

    open_requested = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pressed_selection: list[str] = []

    def selected_run_ids(self) -> list[str]:
        rows = sorted({i.row() for i in self.selectionModel().selectedRows()})
        return [str(self.model().index(r, 0).data(RUN_ID_ROLE)) for r in rows]

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers():
            ids = self.selected_run_ids()
            if ids:
                self.open_requested.emit(ids)
            event.accept()
            return
        super().keyPressEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        index = self.indexAt(event.position().toPoint())
        selected = self.selected_run_ids()
        plain = event.modifiers() == Qt.KeyboardModifier.NoModifier
        hit = index.isValid() and self.selectionModel().isSelected(index)
        self._pressed_selection = selected if plain and hit and len(selected) > 1 else []
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        index = self.indexAt(event.position().toPoint())
        super().mouseDoubleClickEvent(event)
        if not index.isValid() or event.button() != Qt.MouseButton.LeftButton:
            return
        run_id = str(index.data(RUN_ID_ROLE))
        ids = self._pressed_selection if run_id in self._pressed_selection else [run_id]
        if len(ids) > 1:
            self._select_ids(ids)
        self.open_requested.emit(ids)

    def _select_ids(self, ids: list[str]) -> None:
        model = self.model()
        assert isinstance(model, RunsTableModel)
        selection = QItemSelection()
        for run_id in ids:
            row = model.row_of(run_id)
            if row is not None:
                selection.select(model.index(row, 0), model.index(row, model.columnCount() - 1))
        self.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)


class RunsPage(QWidget):
    open_runs_requested = Signal(list)  # run ids: one → its window, several → compare
    status_message = Signal(str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.worker = DataWorker("labdeck-runs", self)
        self.catalog = RunsCatalog(ctx.store, ctx.metricstore)
        self.model = RunsTableModel(self.catalog, self.worker, self)
        self.metric_choices: list[str] = []
        self.param_choices: list[str] = []
        self._stopped = False
        self._on_stop: list[Callable[[], None]] = []
        self._settings_loaded = False
        self._fitted = False
        self.last_message = ""
        self.run_actions: RunsActions | None = None

        bar = self._filter_bar()
        self._set_up_view()

        box = QVBoxLayout(self)
        box.setContentsMargins(8, 8, 8, 4)
        box.setSpacing(6)
        box.addLayout(bar)
        box.addWidget(self.view, 1)

        self._filter_timer = QTimer(self, interval=FILTER_DELAY_MS, singleShot=True)
        self._filter_timer.timeout.connect(self._apply_filters)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        for combo in (self.state_box, self.host_box, self.tag_box):
            combo.currentIndexChanged.connect(self._apply_filters)
        self.archived_box.toggled.connect(self._apply_filters)
        self.view.open_requested.connect(self.open_runs_requested)
        self.view.selectionModel().selectionChanged.connect(self._show_count)
        self.model.query_applied.connect(self._show_count)
        self.model.query_applied.connect(self._refresh_choices)
        self.model.query_applied.connect(self._fit_once)
        self.model.columnsInserted.connect(lambda _p, first, last: self._size_columns(first, last))
        self.model.failed.connect(self.show_message)
        self._load_settings()

    def _filter_bar(self) -> QHBoxLayout:
        """The filter text, state/host/tag boxes, Archived, Columns and the count."""
        self.filter_edit = QLineEdit()
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setPlaceholderText(
            "Filter runs: words match name, id, user, host, tags, note · "
            "state:running host:gpu-a tag:paper user:alice")
        self.state_box = QComboBox()
        for label, states in _STATE_CHOICES:
            self.state_box.addItem(label, states)
        self.host_box = QComboBox()
        self.tag_box = QComboBox()
        for combo, label in ((self.host_box, "All hosts"), (self.tag_box, "All tags")):
            combo.addItem(label, "")
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.archived_box = QCheckBox("Archived")
        self.archived_box.setToolTip("Also show archived runs")
        self.columns_button = QToolButton()
        self.columns_button.setText("Columns")
        self.columns_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.columns_menu = QMenu(self)
        self.columns_menu.aboutToShow.connect(self._fill_columns_menu)
        self.columns_button.setMenu(self.columns_menu)
        self.count_label = PlainLabel()
        self.count_label.setMinimumWidth(110)
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        bar.addWidget(self.filter_edit, 1)
        for widget in (self.state_box, self.host_box, self.tag_box, self.archived_box,
                       self.columns_button, self.count_label):
            bar.addWidget(widget)
        return bar

    def _set_up_view(self) -> None:
        self.view = RunsView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setDragEnabled(True)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.setShowGrid(False)
        self.view.verticalHeader().setVisible(False)
        # Fixed row height: the view never measures 100k rows.
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        header.setResizeContentsPrecision(40)  # fit to the first screenful, never 100k rows
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._header_menu)
        header.setSortIndicator(self.model.column_of("base", "submitted"),
                                Qt.SortOrder.DescendingOrder)
        self.view.setSortingEnabled(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._size_columns()

    # -- what others use ---------------------------------------------------------------
    def selected_run_ids(self) -> list[str]:
        """Selected runs, top to bottom as shown."""
        return self.view.selected_run_ids()

    def on_run_changed(self, event: RunChanged) -> None:
        self.model.notify_runs_changed([event.run_id])

    def on_points_stored(self, event: PointsStored) -> None:
        if METRICS in event.kinds:
            self.model.notify_metrics([event.run_key])

    def show_message(self, text: str) -> None:
        self.last_message = text
        self.status_message.emit(text)

    def stop(self) -> None:
        """Stop timers and the worker (idempotent); the page shows what it has."""
        if self._stopped:
            return
        self._stopped = True
        for fn in self._on_stop:
            fn()
        self._filter_timer.stop()
        self.model.stop()
        self.worker.stop()

    # -- filters -----------------------------------------------------------------------
    def _apply_filters(self) -> None:
        query = dataclasses.replace(
            self.model.query(), text=self.filter_edit.text().strip(),
            states=self.state_box.currentData() or frozenset(),
            host=self.host_box.currentData() or "", tag=self.tag_box.currentData() or "",
            show_archived=self.archived_box.isChecked())
        self.model.set_query(query)

    def _show_count(self) -> None:
        total = self.model.rowCount()
        selected = len(self.view.selectionModel().selectedRows())
        text = f"{total:,} run{'s' if total != 1 else ''}"
        self.count_label.setText(f"{selected:,} of {text}" if selected > 1 else text)

    def _refresh_choices(self) -> None:
        catalog = self.catalog

        def work() -> tuple[Any, ...]:
            return catalog.filter_choices(), catalog.column_choices()

        self.worker.submit("runs-choices", work, self._apply_choices, None)

    def _apply_choices(self, result: tuple[Any, ...]) -> None:
        (hosts, tags), (metrics, params) = result
        for box, values in ((self.host_box, hosts), (self.tag_box, tags)):
            current = box.currentData()
            known = [box.itemData(i) for i in range(1, box.count())]
            if known == values:
                continue
            box.blockSignals(True)  # the filter does not change: only the choices do
            while box.count() > 1:
                box.removeItem(1)
            for value in values:
                box.addItem(value, value)
            if current and current not in values:
                box.addItem(current, current)
            box.setCurrentIndex(max(0, box.findData(current)))
            box.blockSignals(False)
        self.metric_choices, self.param_choices = metrics, params

    # -- columns -----------------------------------------------------------------------
    def _header_menu(self, pos: QPoint) -> None:
        self._fill_columns_menu()
        self.columns_menu.popup(self.view.horizontalHeader().mapToGlobal(pos))

    def _fill_columns_menu(self) -> None:
        menu = self.columns_menu
        menu.clear()
        shown = self.model.columns()
        metrics = [c.key for c in shown if c.kind == "metric"]
        params = [c.key for c in shown if c.kind == "param"]
        for kind, title, choices, chosen in (
                ("metric", "Last value of metric", self.metric_choices, metrics),
                ("param", "Parameter", self.param_choices, params)):
            menu.addSection(title)
            names = list(dict.fromkeys([*chosen, *choices]))
            if not names:
                menu.addAction("(none recorded yet)").setEnabled(False)
            for name in names:
                action = menu.addAction(action_text(name))
                action.setCheckable(True)
                action.setChecked(name in chosen)
                action.toggled.connect(
                    lambda on, k=kind, n=name: self.toggle_column(k, n, on))
        menu.addSeparator()
        menu.addAction("Hide all metric and parameter columns",
                       lambda: self.set_extra_columns([], []))

    def toggle_column(self, kind: str, name: str, shown: bool) -> None:
        columns = self.model.columns()
        metrics = [c.key for c in columns if c.kind == "metric"]
        params = [c.key for c in columns if c.kind == "param"]
        chosen = metrics if kind == "metric" else params
        if shown and name not in chosen:
            chosen.append(name)
        elif not shown and name in chosen:
            chosen.remove(name)
        self.set_extra_columns(metrics, params)

    def set_extra_columns(self, metrics: list[str], params: list[str]) -> None:
        self.model.set_extra_columns(metrics, params)
        if self._settings_loaded:
            store, value = self.ctx.store, {"metrics": metrics, "params": params}
            self.worker.submit("runs-save-columns",
                               lambda: store.set_setting(SETTINGS_KEY, value), None, None)

    def _size_columns(self, first: int = 0, last: int = -1) -> None:
        """Name, tags and note get room; the others fit their header and the rows on
        screen (once rows are there; later the user's widths stand)."""
        columns = self.model.columns()
        loaded = self.model.cached_count() > 0
        for i in range(first, len(columns) if last < 0 else last + 1):
            column = columns[i]
            if column.kind == "base" and column.key in _WIDTHS:
                self.view.setColumnWidth(i, _WIDTHS[column.key])
            elif loaded:
                self.view.resizeColumnToContents(i)
                width = self.view.columnWidth(i) + 6
                self.view.setColumnWidth(i, max(56, min(width, 170)))
            else:
                self.view.setColumnWidth(i, 90)

    def _fit_once(self) -> None:
        if not self._fitted and self.model.cached_count() > 0:
            self._fitted = True
            self._size_columns()

    def _load_settings(self) -> None:
        store = self.ctx.store

        def loaded(value: Any) -> None:
            if isinstance(value, dict):
                self.model.set_extra_columns([str(m) for m in value.get("metrics", [])],
                                             [str(p) for p in value.get("params", [])])
            self._settings_loaded = True
            self.model.set_query(self.model.query())  # no-op once the sort asked for it

        self.worker.submit("runs-settings", lambda: store.get_setting(SETTINGS_KEY),
                           loaded, lambda exc: loaded(None))


def install_runs_page(window: Any, ctx: AppContext,
                      open_runs: Callable[[list[str]], None] | None = None,
                      submit_dialog: Callable[[dict[str, Any]], Any] | None = None) -> RunsPage:
    """Add the Runs tab, its "Runs" menu and its shortcuts to ``window`` (a ``MainWindow``).

    ``open_runs(ids)``: one id → the run's window, several → a comparison.
    ``submit_dialog(spec)``: the submit dialog pre-filled with a spec (clone and edit).
    """
    page = RunsPage(ctx)
    page.run_actions = actions = RunsActions(page, ctx, submit_dialog)
    if open_runs is not None:
        page.open_runs_requested.connect(open_runs)
    page.status_message.connect(
        lambda text: window.statusBar().showMessage(display_text(text), 8000))
    window.add_page(page, "Runs")
    actions.install_menu(window.menuBar())
    connect_events(page, ctx)
    window.closed.connect(page.stop)
    return page


def connect_events(page: RunsPage, ctx: AppContext) -> EventBridge:
    """Live updates from the Lab's bus: run state changes (the dispatcher's), new metric
    values (the ingestor's); the page stops listening when it stops."""
    bridge = EventBridge(ctx.bus, page, types=(RunChanged, PointsStored))
    bridge.run_changed.connect(page.on_run_changed)
    bridge.points_stored.connect(page.on_points_stored)
    page._on_stop.append(bridge.detach)
    return bridge
