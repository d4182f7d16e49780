"""``RunsTableModel``: the runs table over the store, fast at 100k runs.

A query (filter + sort, ``app.core.queue.runs_filter``) yields the matching ids in display order:
that list is the model's rows. Row contents are read by id, a block of ``BLOCK`` rows at a
time, when the view first asks for one of them, and kept in a bounded cache. Every read
runs on the ``DataWorker``; a row not read yet shows an ellipsis for a frame.

Updates never reset the model. A change (dispatcher event, poll of the store's change
token) re-reads the id list and the changed rows off the GUI thread, diffs the id lists
there, and the GUI thread applies the result as row removals/insertions, a layout change
(rows moved; selection kept), and ``dataChanged`` for exactly the rows that changed.
New metric values from the ingestor touch only the metric columns of cached rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QByteArray,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)

from app.core.queue.runs_filter import RunsQuery, SortKey
from app.core.runs_catalog import ChangeToken, RunRow, RunsCatalog
from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import display_text, tooltip_text
from app.ui.runs import format as fmt
from app.ui.runs.cache import BLOCK, RowCache
from app.ui.runs.diff import Plan, plan_changes, ranges
from app.ui.runs.format import Column
from ssh_backend.runs import base_run_id

RUN_IDS_MIME = "application/x-labdeck-run-ids"
RUN_ID_ROLE = int(Qt.ItemDataRole.UserRole) + 1
RUN_ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 2
POLL_MS = 3000  # runs changed by another process (the CLI, a second Labdeck)
REFRESH_DELAY_MS = 150  # a burst of dispatcher events becomes one refresh
METRICS_DELAY_MS = 1000
Index = QModelIndex | QPersistentModelIndex
_NO_INDEX = QModelIndex()
_FLAGS = (Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
          | Qt.ItemFlag.ItemIsDragEnabled)
_R = Qt.ItemDataRole
_DISPLAY, _ALIGN, _TOOLTIP = int(_R.DisplayRole), int(_R.TextAlignmentRole), int(_R.ToolTipRole)
_FOREGROUND, _DECORATION = int(_R.ForegroundRole), int(_R.DecorationRole)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_ROLES = frozenset({_DISPLAY, _ALIGN, _FOREGROUND, _DECORATION, _TOOLTIP, RUN_ID_ROLE,
                    RUN_ROW_ROLE})


class RunsTableModel(QAbstractTableModel):
    query_applied = Signal()  # a new id list is in place (query, sort or refresh)
    rows_loaded = Signal()  # rows read from the store arrived
    failed = Signal(str)  # a read failed: a sentence for the status bar

    def __init__(self, catalog: RunsCatalog, worker: DataWorker,
                 parent: QObject | None = None, poll_ms: int = POLL_MS,
                 tick_ms: int = 1000) -> None:
        super().__init__(parent)
        self._catalog, self._worker = catalog, worker
        self._query = RunsQuery()
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._cache = RowCache()
        self._columns = fmt.table_columns()
        self._state_col = -1
        self._align: list[int | None] = []
        self._columns_changed()
        self._generation = 0
        self._loaded = False
        self._token: ChangeToken | None = None
        self._rows_busy = False
        self._changed: set[str] = set()
        self._refresh_busy = False
        self._metrics_dirty: set[str] = set()
        self._dark = fmt.dark_palette()
        self._fetch_timer = self._timer(0, self._fetch_wanted)
        self._refresh_timer = self._timer(REFRESH_DELAY_MS, self._refresh)
        self._metrics_timer = self._timer(METRICS_DELAY_MS, self._refresh_metrics)
        self._poll = QTimer(self, interval=max(poll_ms, 1))
        self._polling = poll_ms > 0
        self._poll.timeout.connect(lambda: self.request_refresh())
        self._tick = QTimer(self, interval=max(tick_ms, 1))
        self._ticking = tick_ms > 0
        self._tick.timeout.connect(self._tick_durations)

    def _timer(self, ms: int, slot: Any) -> QTimer:
        timer = QTimer(self, interval=ms, singleShot=True)
        timer.timeout.connect(slot)
        return timer

    # -- the Qt model interface ----------------------------------------------------------
    def rowCount(self, parent: Index = _NO_INDEX) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: Index = _NO_INDEX) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self._columns):
            return None
        column = self._columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return display_text(column.title)  # a metric's or parameter's name
        if role == Qt.ItemDataRole.TextAlignmentRole and (
                column.kind != "base" or column.key == "duration"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column.kind != "base":
            return tooltip_text(f"last value of the metric {column.key}"
                                if column.kind == "metric" else f"the parameter {column.key}")
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        return _FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    # A repaint asks ~7 roles of each of ~300 cells: unused roles return at once, texts
    # are formatted once per row and kept until the row, its metrics or the columns change.
    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if role not in _ROLES or not index.isValid():
            return None
        r = index.row()
        run_id = self._ids[r]
        if role == RUN_ID_ROLE:
            return run_id
        row = self._cache.get(run_id)
        if row is None:
            self._want(r // BLOCK)
            return "…" if role == _DISPLAY and index.column() == 0 else None
        c = index.column()
        if role == _DISPLAY:
            return self._cache.texts(row, self._columns)[c]
        if role == _ALIGN:
            return self._align[c]
        if c == self._state_col:
            if role == _FOREGROUND:
                return fmt.state_color(row.state, self._dark)
            if role == _DECORATION:
                return fmt.state_icon(row.state, self._dark)
        if role == _TOOLTIP:
            return fmt.tooltip(row, self._columns[c])
        if role == RUN_ROW_ROLE:
            return row
        return None

    def _columns_changed(self) -> None:
        self._cache.forget_texts()
        self._state_col = self.column_of("base", "state")
        self._align = [_RIGHT if c.kind != "base" or c.key == "duration" else None
                       for c in self._columns]

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self._columns):
            return
        c = self._columns[column]
        key = SortKey(c.kind, c.key) if c.kind != "base" else SortKey(c.key)
        self.set_query(dataclasses.replace(
            self._query, sort=key, descending=order == Qt.SortOrder.DescendingOrder))

    def mimeTypes(self) -> list[str]:
        return [RUN_IDS_MIME]

    def mimeData(self, indexes: Sequence[Index]) -> QMimeData:
        rows = sorted({i.row() for i in indexes if i.isValid()})
        data = QMimeData()
        payload = json.dumps([self._ids[r] for r in rows]).encode()
        data.setData(RUN_IDS_MIME, QByteArray(payload))
        return data

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    # -- what the page reads ---------------------------------------------------------------
    def query(self) -> RunsQuery:
        return self._query

    def columns(self) -> list[Column]:
        return list(self._columns)

    def column_of(self, kind: str, key: str) -> int:
        for i, c in enumerate(self._columns):
            if (c.kind, c.key) == (kind, key):
                return i
        return -1

    def run_id(self, row: int) -> str:
        return self._ids[row]

    def row_of(self, run_id: str) -> int | None:
        return self._pos.get(run_id)

    def run_row(self, run_id: str) -> RunRow | None:
        """The cached row of ``run_id`` (None until it was read)."""
        return self._cache.get(run_id)

    def is_loaded(self) -> bool:
        return self._loaded

    def cached_count(self) -> int:
        return len(self._cache)

    # -- queries -------------------------------------------------------------------------
    def set_query(self, query: RunsQuery) -> None:
        """Show ``query``'s runs (read off the GUI thread; applied when they arrive).

        A new filter shows its first block at once (``LIMIT``), then the whole id list
        arrives as rows appended below it; a new sort of the same runs is one layout
        change, so the selection stays on the same runs.
        """
        if query == self._query and self._generation:
            return  # already shown, or on its way
        resort = self._loaded and query == dataclasses.replace(
            self._query, sort=query.sort, descending=query.descending)
        self._query = query
        self._generation += 1
        generation, old = self._generation, self._ids
        catalog = self._catalog
        head: list[list[str]] = []  # the head job's ids, for the full job to diff against

        def head_work() -> tuple[Any, ...]:
            ids = catalog.ids(query, limit=BLOCK)
            head.append(ids)
            return generation, ids, catalog.rows(ids)

        def work() -> tuple[Any, ...]:
            token = catalog.change_token()
            ids = catalog.ids(query)
            rows = catalog.rows(ids[:BLOCK]) if resort else {}
            if head:
                return generation, head[0], token, ids, rows, plan_changes(head[0], ids)
            same = len(ids) == len(old) and set(ids) == set(old)
            positions = {k: i for i, k in enumerate(ids)}
            plan = Plan("layout" if same else "reset", positions=positions)
            return generation, old, token, ids, rows, plan

        if not resort:
            self._worker.submit("runs-head", head_work, self._apply_head, self._on_error)
        self._worker.submit("runs-query", work, self._apply_query, self._on_error)

    def _apply_head(self, result: tuple[Any, ...]) -> None:
        generation, ids, rows = result
        if generation != self._generation:
            return
        self._cache.store(rows.values())
        self.beginResetModel()
        self._ids, self._pos = ids, {k: i for i, k in enumerate(ids)}
        self._cache.clear_wants()
        self.endResetModel()

    def _apply_query(self, result: tuple[Any, ...]) -> None:
        generation, old, token, ids, rows, plan = result
        if generation != self._generation:
            return
        self._cache.store(rows.values())
        if old is self._ids and plan.kind == "same":
            pass  # the head was the whole list
        elif old is self._ids and plan.kind == "ranges" and not plan.removed:
            self._apply_plan(plan, ids)  # the rest of the list, below the head shown
        elif old is self._ids and plan.kind in ("same", "layout") and self._ids:
            self._relayout(ids, plan.positions or self._pos)  # the selection stays
        else:
            self.beginResetModel()
            self._ids = ids
            self._pos = plan.positions or {k: i for i, k in enumerate(ids)}
            self._cache.clear_wants()
            self.endResetModel()
        self._token = token
        self._loaded = True
        if self._polling and not self._poll.isActive():
            self._poll.start()
        if self._ticking and not self._tick.isActive():
            self._tick.start()
        self.query_applied.emit()

    def _relayout(self, ids: list[str], pos: dict[str, int]) -> None:
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        after = []
        for index in before:
            new = pos.get(self._ids[index.row()]) if index.row() < len(self._ids) else None
            after.append(self.index(new, index.column()) if new is not None else _NO_INDEX)
        self._ids, self._pos = ids, pos
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    # -- rows on demand --------------------------------------------------------------------
    def _want(self, block: int) -> None:
        self._cache.want(block)
        if not self._rows_busy and not self._fetch_timer.isActive():
            self._fetch_timer.start()

    def _fetch_wanted(self) -> None:
        ids = self._cache.take_wanted(self._ids)
        if not ids:
            return
        self._rows_busy = True
        catalog = self._catalog
        self._worker.submit("runs-rows", lambda: catalog.rows(ids),
                            self._apply_rows, self._on_rows_error)

    def _apply_rows(self, rows: dict[str, RunRow]) -> None:
        self._rows_busy = False
        self._emit_rows_changed(self._cache.store(rows.values()))
        if self._cache.has_wants():
            self._fetch_timer.start()
        self.rows_loaded.emit()

    def _on_rows_error(self, exc: BaseException) -> None:
        self._rows_busy = False
        self._on_error(exc)

    def _emit_rows_changed(self, ids: Iterable[str], first: int = 0, last: int = -1) -> None:
        """``dataChanged`` over each run of consecutive rows among ``ids``."""
        rows = sorted({r for r in (self._pos.get(i) for i in ids) if r is not None})
        last = self.columnCount() - 1 if last < 0 else last
        for top, bottom in ranges(rows):
            self.dataChanged.emit(self.index(top, first), self.index(bottom, last))

    # -- updates ---------------------------------------------------------------------------
    def notify_runs_changed(self, run_ids: Iterable[str]) -> None:
        """Runs changed in the store (GUI thread): re-read them soon, once per burst."""
        self.request_refresh(run_ids)

    def request_refresh(self, run_ids: Iterable[str] = ()) -> None:
        self._changed.update(run_ids)
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _refresh(self) -> None:
        if not self._loaded:
            return
        if self._refresh_busy:  # one at a time; this one follows when it ends
            self._refresh_timer.start()
            return
        forced, self._changed = set(self._changed), set()
        generation, old, token, query = self._generation, self._ids, self._token, self._query
        cached = self._cache.ids()
        catalog = self._catalog

        def work() -> tuple[Any, ...] | None:
            new_token = catalog.change_token()
            if new_token == token and not forced:
                return None
            since = token.last_update if token is not None else 0.0
            changed = set(catalog.changed_since(since)) | forced
            ids = catalog.ids(query) if new_token != token else old
            plan = plan_changes(old, ids)
            rows = catalog.rows([i for i in changed if i in cached])
            return generation, old, new_token, ids, plan, rows, forced

        self._refresh_busy = True
        self._worker.submit("runs-refresh", work, self._apply_refresh, self._on_refresh_error)

    def _on_refresh_error(self, exc: BaseException) -> None:
        self._refresh_busy = False
        self._on_error(exc)

    def _apply_refresh(self, result: tuple[Any, ...] | None) -> None:
        self._refresh_busy = False
        if result is None:
            return
        generation, old, token, ids, plan, rows, forced = result
        if generation != self._generation or old is not self._ids:
            self.request_refresh(forced)  # the list moved on meanwhile: read again
            return
        self._apply_plan(plan, ids)
        self._token = token
        self._emit_rows_changed(self._cache.store(rows.values()))
        if plan.kind != "same":
            self.query_applied.emit()

    def _apply_plan(self, plan: Plan, ids: list[str]) -> None:
        if plan.kind == "same":
            return
        if plan.kind == "reset":
            self.beginResetModel()
            self._ids, self._pos = ids, plan.positions
            self.endResetModel()
            return
        for first, last in reversed(plan.removed):
            self.beginRemoveRows(_NO_INDEX, first, last)
            self._ids = self._ids[:first] + self._ids[last + 1:]
            self.endRemoveRows()
        if plan.reordered:
            kept = list(plan.reordered)
            self._relayout(kept, {run_id: i for i, run_id in enumerate(kept)})
        for first, last in plan.inserted:
            self.beginInsertRows(_NO_INDEX, first, last)
            self._ids = self._ids[:first] + ids[first:last + 1] + self._ids[first:]
            self.endInsertRows()
        self._ids, self._pos = ids, plan.positions

    def notify_metrics(self, host_run_ids: Iterable[str]) -> None:
        """New metric points for these attempts (``Run.host_run_id``)."""
        if not any(c.kind == "metric" for c in self._columns):
            return
        for key in host_run_ids:
            run_id = base_run_id(key)
            if run_id in self._cache:
                self._metrics_dirty.add(run_id)
        if self._metrics_dirty and not self._metrics_timer.isActive():
            self._metrics_timer.start()

    def _refresh_metrics(self) -> None:
        rows = [row for i in self._metrics_dirty if (row := self._cache.get(i)) is not None]
        self._metrics_dirty.clear()
        if not rows:
            return
        catalog = self._catalog
        self._worker.submit("runs-metrics", lambda: catalog.metric_values(rows),
                            self._apply_metrics, self._on_error)

    def _apply_metrics(self, values: dict[str, dict[str, float]]) -> None:
        changed = self._cache.set_metrics(values)
        metric_cols = [i for i, c in enumerate(self._columns) if c.kind == "metric"]
        if changed and metric_cols:
            self._emit_rows_changed(changed, metric_cols[0], metric_cols[-1])

    def _tick_durations(self) -> None:
        """Durations of active runs grow every second: repaint that one column."""
        col = self.column_of("base", "duration")
        active = [row.id for row in self._cache.rows() if row.state in fmt.ACTIVE]
        self._cache.forget_texts(active)
        if col >= 0 and active:
            self._emit_rows_changed(active, col, col)

    def _on_error(self, exc: BaseException) -> None:
        self.failed.emit(f"Could not read the runs: {exc}")

    # -- columns ---------------------------------------------------------------------------
    def set_extra_columns(self, metrics: Sequence[str], params: Sequence[str]) -> None:
        """Show these metric and parameter columns (before Tags/Note), in this order."""
        wanted = fmt.table_columns(metrics, params)
        # Whole ranges at a time: each signal makes every view (and Qt's model tester)
        # look at the model again.
        gone = [i for i, c in enumerate(self._columns) if c not in wanted]
        for first, last in reversed(ranges(gone)):
            self.beginRemoveColumns(_NO_INDEX, first, last)
            self._columns = self._columns[:first] + self._columns[last + 1:]
            self._columns_changed()
            self.endRemoveColumns()
        new = [j for j, c in enumerate(wanted) if c not in self._columns]
        for first, last in ranges(new):
            self.beginInsertColumns(_NO_INDEX, first, last)
            self._columns = self._columns[:first] + wanted[first:last + 1] + self._columns[first:]
            self._columns_changed()
            self.endInsertColumns()
        sort = self._query.sort
        if sort.kind in ("metric", "param") and self.column_of(sort.kind, sort.arg) < 0:
            self.sort(self.column_of("base", "submitted"), Qt.SortOrder.DescendingOrder)

    def stop(self) -> None:
        for timer in (self._poll, self._tick, self._fetch_timer, self._refresh_timer,
                      self._metrics_timer):
            timer.stop()
