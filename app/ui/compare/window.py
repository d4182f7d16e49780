"""The compare window: several runs' curves overlaid, their differing parameters, and a
last/min/max summary; runs come and go by drop, by ``add_runs`` and by "Remove".

``open_compare_window(run_ids, ctx)`` is what the runs table calls for a selection of
several runs. Every store read goes through the window's ``DataWorker``; layout writes go
through a second one (a last save outlives the window). The ingestor's ``PointsStored``
events reach Qt through the window's ``EventBridge`` and only mark data stale: the
curves fetch at their own display rate, the tables are re-read at most once a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QWidget

from app.core.events import METRICS, PointsStored
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.common.plain_text import title_text
from app.ui.compare.data import (
    CompareLayout,
    RunSnapshot,
    load_layout,
    load_snapshots,
    save_layout,
    signature,
    unique_labels,
)
from app.ui.compare.legend import LegendEntry, MetricChooser, RunLegend
from app.ui.compare.panel import ComparePanel
from app.ui.compare.params import ParamRun, ParamTable
from app.ui.compare.stats import StatsTable, stat_rows, write_stats_csv
from app.ui.compare.view import build_layout
from app.ui.curves.curve_data import XMode, series_order
from app.ui.curves.export import ask_export_path, export_drawing
from app.ui.run_window.window import open_run_window

RUN_IDS_MIME = "application/x-labdeck-run-ids"
TICK_MS = 1000  # tables and run states are re-read at most this often
RUN_POLL_S = 3.0  # while a run is live, its state is re-read this often
SAVE_DELAY_MS = 400  # a layout is written once the user stops changing it


def run_ids_from_mime(mime: QMimeData | None) -> list[str]:
    """The run ids a drag carries (a JSON list of strings), or [] for anything else."""
    if mime is None or not mime.hasFormat(RUN_IDS_MIME):
        return []
    try:
        ids = json.loads(bytes(mime.data(RUN_IDS_MIME).data()).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return []
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, str) and i]


class RunDropFilter(QObject):
    """Accepts drags of run ids on the widgets it watches (the window and its views)."""

    def __init__(self, on_drop: Callable[[list[str]], None], parent: QObject) -> None:
        super().__init__(parent)
        self._on_drop = on_drop

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            assert isinstance(event, QDragEnterEvent | QDropEvent)
            ids = run_ids_from_mime(event.mimeData())
            if not ids:
                return False
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
            if kind == QEvent.Type.Drop:
                self._on_drop(ids)
            return True
        return super().eventFilter(watched, event)


class CompareWindow(QWidget):
    loaded = Signal()  # the runs were (re)read and shown
    layout_saved = Signal()
    closed = Signal()

    def __init__(self, run_ids: Iterable[str], ctx: AppContext,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.ctx = ctx
        self.worker = DataWorker("labdeck-compare", self)
        self.writer = DataWorker("labdeck-compare-save", self, idle_exit=True)
        self._ids: list[str] = []
        self._indices: dict[str, int] = {}  # run id → palette index, kept while it stays
        self._snaps: dict[str, RunSnapshot] = {}
        self._missing: list[str] = []
        self._names: list[str] = []  # every metric of the runs, in plot order
        self._chosen: set[str] = set()
        self._signature: str | None = None
        self._panel_runs: list[tuple[str, str]] = []
        self._restoring = False
        self._stale = False
        self._last_read = 0.0
        self._closed = False
        self.reads = 0  # reads of the store applied so far (tests wait on it)

        self.curves = ComparePanel(self.worker, ctx.metricstore)
        self.legend = RunLegend()
        self.metrics = MetricChooser()
        self.params = ParamTable()
        self.stats = StatsTable()
        self.ui = build_layout(self)
        self.show_all = self.ui.show_all
        menu = self.curves.controls.export_menu
        menu.addAction("Plots as PNG…", lambda: self._ask_export("png"))
        menu.addAction("Plots as SVG…", lambda: self._ask_export("svg"))
        menu.addAction("Summary as CSV…", lambda: self._ask_export("csv"))
        self.ui.export_button.clicked.connect(lambda: self._ask_export("csv"))

        self.legend.toggled.connect(self._on_legend_toggled)
        self.legend.remove_requested.connect(self.remove_runs)
        self.legend.open_requested.connect(self._open_run)
        self.params.remove_requested.connect(self.remove_runs)
        self.show_all.toggled.connect(self._on_show_all)
        self.metrics.chosen_changed.connect(self._on_metrics_chosen)
        self.curves.run_toggled.connect(self._on_plot_legend_toggled)
        self.curves.colors_changed.connect(self._on_colors_changed)
        self.curves.controls.changed.connect(self._on_controls_changed)

        self.setAcceptDrops(True)
        self._drops = RunDropFilter(self.add_runs, self)
        for widget in (self, self.legend.viewport(), self.params.viewport(),
                       self.stats.viewport(), self.metrics.viewport()):
            widget.setAcceptDrops(True)
            widget.installEventFilter(self._drops)
        self.curves.plot_viewport().installEventFilter(self._drops)

        self.bridge = EventBridge(ctx.bus, self, types=(PointsStored,))
        self.bridge.points_stored.connect(self._on_points_stored)
        self._tick = QTimer(self, interval=TICK_MS)
        self._tick.timeout.connect(self._on_tick)
        self._tick.start()
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self._save_layout)
        self.resize(1280, 800)
        # Not the legend: focusing it would select its first run.
        self.curves.controls.x_combo.setFocus()
        self.add_runs(run_ids)

    # -- public API -----------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        return list(self._ids)

    def missing_run_ids(self) -> list[str]:
        """Runs of the comparison that are no longer in the store (left out)."""
        return list(self._missing)

    def add_runs(self, run_ids: Iterable[str]) -> None:
        """Add runs to the comparison (ids already in it are ignored)."""
        new = [i for i in dict.fromkeys(run_ids) if i not in self._indices]
        for run_id in new:
            used = set(self._indices.values())
            self._indices[run_id] = next(i for i in range(len(used) + 1) if i not in used)
            self._ids.append(run_id)
        if new:
            self.reload()
        else:
            self._render()

    def remove_runs(self, run_ids: Iterable[str]) -> None:
        gone = set(run_ids)
        self._ids = [i for i in self._ids if i not in gone]
        for run_id in gone:
            self._indices.pop(run_id, None)
            self._snaps.pop(run_id, None)
        self._missing = [i for i in self._missing if i not in gone]
        self._render()
        self.reload()  # the set of metrics, and with it the remembered layout, may change

    def reload(self) -> None:
        runstore, metricstore, store = self.ctx.runstore, self.ctx.metricstore, self.ctx.store
        ids, known = list(self._ids), self._signature

        def work() -> tuple[list[RunSnapshot], list[str], str, CompareLayout | None, bool]:
            snaps, missing = load_snapshots(runstore, metricstore, ids)
            names = {info.name for s in snaps for info in s.infos}
            sig = signature(names)
            checked = sig != known
            return snaps, missing, sig, load_layout(store, names) if checked else None, checked

        self._last_read = time.monotonic()
        self.worker.submit("runs", work, self._apply_load, self._on_error)

    # -- applying what was read ---------------------------------------------------------
    def _apply_load(self, result: tuple[list[RunSnapshot], list[str], str,
                                        CompareLayout | None, bool]) -> None:
        snaps, missing, sig, layout, checked = result
        self._snaps = {s.run_id: s for s in snaps if s.run_id in self._indices}
        self._missing = [m for m in missing if m in self._indices]
        names = sorted({i.name for s in self._snaps.values() for i in s.infos}, key=series_order)
        if checked and sig != self._signature:
            self._signature = sig
            if layout is not None:
                self._chosen = set(layout.metrics) & set(names)
                self._apply_controls(layout)
            else:  # metrics new to this comparison are plotted
                self._chosen = (self._chosen & set(names)) | (set(names) - set(self._names))
        self._names = names
        self.reads += 1
        self._render()
        self.loaded.emit()

    def _apply_controls(self, layout: CompareLayout) -> None:
        self._restoring = True
        try:
            controls = self.curves.controls
            if layout.x_mode in {m.value for m in XMode}:
                controls.set_x_mode(XMode(layout.x_mode))
            controls.set_smoothing(layout.smoothing)
            controls.log_check.setChecked(layout.log_y)
        finally:
            self._restoring = False

    def _render(self) -> None:
        """Show what is known now: legend, curves, metric choice, parameters, summary."""
        snaps = [self._snaps[i] for i in self._ids if i in self._snaps]
        labels = unique_labels(snaps)
        self.curves.set_color_indices({s.key: self._indices[s.run_id] for s in snaps})
        panel_runs = [(s.key, labels[s.run_id]) for s in snaps]
        if panel_runs != self._panel_runs:
            self._panel_runs = panel_runs
            self.curves.set_runs(panel_runs, {s.key: s.started_at for s in snaps})
        else:
            for s in snaps:
                self.curves.set_t0(s.key, s.started_at)
        colors = {s.run_id: self.curves.run_color(s.key) for s in snaps}
        self.legend.set_entries([
            LegendEntry(s.run_id, labels[s.run_id], s.detail(), colors[s.run_id],
                        self.curves.run_visible(s.key)) for s in snaps])
        chosen = [n for n in self._names if n in self._chosen]
        self.metrics.set_metrics(self._names, chosen)
        self.curves.set_shown_series(chosen)
        self.params.set_runs([ParamRun(s.run_id, labels[s.run_id], colors[s.run_id],
                                             s.params) for s in snaps])
        self.ui.params_summary.setText(self.params.summary())
        self.stats.set_rows(stat_rows(snaps, labels), colors)
        count = len(self._ids)
        self.ui.title.setText(f"Comparing {count} run{'s' if count != 1 else ''}")
        names = ", ".join(labels[s.run_id] for s in snaps[:4]) + ("…" if len(snaps) > 4 else "")
        self.setWindowTitle(title_text(f"Compare — {names}") if names else "Compare runs")
        if self._missing:
            self.ui.status.setText(f"{len(self._missing)} of these runs are no longer in the "
                                   "store (deleted); they are left out.")

    def _on_colors_changed(self) -> None:
        self._render()
        self.stats.recolor({s.run_id: self.curves.run_color(s.key) for s in self._snaps.values()})

    # -- user actions ---------------------------------------------------------------------
    def _on_legend_toggled(self, run_id: str, visible: bool) -> None:
        snap = self._snaps.get(run_id)
        if snap is not None:
            self.curves.set_run_visible(snap.key, visible)

    def _on_plot_legend_toggled(self, key: str, visible: bool) -> None:
        run_id = next((s.run_id for s in self._snaps.values() if s.key == key), None)
        if run_id is not None:
            self.legend.set_visible(run_id, visible)

    def set_run_visible(self, run_id: str, visible: bool) -> None:
        if self.legend.is_visible(run_id) != visible:
            self.legend.toggle(run_id)

    def _on_show_all(self, on: bool) -> None:
        self.params.set_show_all(on)
        self.ui.params_summary.setText(self.params.summary())

    def _on_metrics_chosen(self, chosen: list[str]) -> None:
        self._chosen = set(chosen)
        self.curves.set_shown_series(chosen)
        self._layout_changed()

    def _on_controls_changed(self, what: str) -> None:
        if what in ("x_mode", "smoothing", "log_y"):
            self._layout_changed()

    def _layout_changed(self) -> None:
        if not self._restoring and self._signature is not None and self._names:
            self._save_timer.start()

    def current_layout(self) -> CompareLayout:
        controls = self.curves.controls
        return CompareLayout(tuple(n for n in self._names if n in self._chosen),
                             controls.x_mode.value, controls.smoothing, controls.log_y)

    def _save_layout(self, notify: bool = True) -> None:
        store, names, layout = self.ctx.store, list(self._names), self.current_layout()
        self.writer.submit("save-layout", lambda: save_layout(store, names, layout),
                           (lambda _r: self.layout_saved.emit()) if notify else None,
                           self._on_error if notify else None)

    def _open_run(self, run_id: str) -> None:
        open_run_window(run_id, self.ctx.run_context())

    # -- live data ----------------------------------------------------------------------
    def _on_points_stored(self, event: PointsStored) -> None:
        key = event.run_key
        if METRICS in event.kinds and any(s.key == key for s in self._snaps.values()):
            self.curves.notify_data(key)
            self._stale = True

    def _on_tick(self) -> None:
        live = any(s.live for s in self._snaps.values())
        if self._stale:
            self._stale = False
            self.reload()
        elif live and time.monotonic() - self._last_read >= RUN_POLL_S:
            if self.ctx.bus is None:  # nobody tells us about new points: look
                for s in self._snaps.values():
                    if s.live:
                        self.curves.notify_data(s.key)
            self.reload()

    # -- exports ------------------------------------------------------------------------
    def _ask_export(self, kind: str) -> None:
        name = "comparison-summary" if kind == "csv" else "comparison"
        path = ask_export_path(self, kind, name)
        if path:
            self.export(kind, path)

    def export(self, kind: str, path: str | Path,
               done: Callable[[str], None] | None = None) -> None:
        """PNG/SVG of the plots now (GUI thread: it renders); the summary CSV on the worker."""
        if export_drawing(self.curves, kind, path):
            self._exported(f"Saved the plots to {path}", done)
        elif kind == "csv":
            rows = list(self.stats.rows)
            self.ui.status.setText(f"Writing {path}…")
            self.worker.submit(f"csv-{path}", lambda: write_stats_csv(rows, path),
                               lambda n: self._exported(f"Saved {n} rows to {path}", done),
                               self._on_error)
        else:
            raise ValueError(f"unknown export kind {kind!r}")

    def _exported(self, message: str, done: Callable[[str], None] | None) -> None:
        self.ui.status.setText(message)
        if done is not None:
            done(message)

    def _on_error(self, exc: BaseException) -> None:
        if not self._closed:
            self.ui.status.setText(f"{exc} — check that the Labdeck store is readable "
                                   "and writable, then retry.")

    # -- closing ------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop timers, listeners and the worker (idempotent); a pending layout is saved."""
        if self._closed:
            return
        self._closed = True
        if self._save_timer.isActive():
            self._save_timer.stop()
            self._save_layout(notify=False)
        self.bridge.detach()
        self._tick.stop()
        self.curves.stop()
        self.worker.stop()
        # The last layout is written after the window is gone; nothing is reported back.
        self.writer.stop(timeout=0, finish_pending=True)
        _open.discard(self)
        self.closed.emit()


_open: set[CompareWindow] = set()  # top-level windows live as long as they are open


def open_compare_window(run_ids: list[str], ctx: AppContext) -> CompareWindow:
    """Show a new comparison of ``run_ids`` (ctx: the app's stores and services)."""
    window = CompareWindow(run_ids, ctx)
    _open.add(window)
    window.show()
    window.raise_()
    window.activateWindow()
    return window
