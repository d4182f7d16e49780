"""The window of one run: header, live curves, console, parameters and GPU use.

``open_run_window(run_id, context)`` is what the runs table calls. Everything the window
reads goes through its one ``DataWorker``. The Lab's events reach it through its
``EventBridge``: the run's ``RunChanged`` (claimed, started, ended) re-reads the record at
once; ``PointsStored`` only marks the curves and the console dirty, and the panels'
display timers (5 Hz) fetch and draw, so a chatty run cannot flood the GUI.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QHBoxLayout, QTabWidget, QVBoxLayout, QWidget

from app.core.events import LOG, METRICS, PointsStored, RunChanged
from app.core.queue.runs import Run, RunState
from app.ui.common.context import RunContext
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.common.params_view import ParamsView
from app.ui.common.plain_text import PlainLabel, title_text
from app.ui.common.run_colors import STATE_COLORS
from app.ui.curves.export import ask_export_path, export_drawing, write_metrics_csv
from app.ui.curves.gpu_usage_plot import GpuUsagePlot
from app.ui.curves.plot_axes import format_duration
from app.ui.curves.plots import CurvePanel
from app.ui.run_window.console_view import ConsoleView


def _when(t: float | None) -> str:
    if not t:
        return "–"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


class RunWindow(QWidget):
    run_changed = Signal(object)  # the Run record, whenever it was read again
    closed = Signal()

    def __init__(self, run_id: str, context: RunContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.run_id = run_id
        self.context = context
        self.run: Run | None = None
        self.worker = DataWorker(f"labdeck-run-{run_id}", self)
        self._key = ""  # the metric store's id of the shown attempt
        self._closed = False

        self.name_label = PlainLabel(run_id)
        self.name_label.setStyleSheet("font-size: 15pt; font-weight: bold;")
        self.name_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state_chip = PlainLabel()
        self.place_label = PlainLabel()
        self.user_label = PlainLabel()
        self.time_label = PlainLabel()
        self.exit_label = PlainLabel()
        self.exit_label.setWordWrap(True)
        for label in (self.place_label, self.user_label, self.time_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(self.name_label)
        top.addWidget(self.state_chip)
        top.addSpacing(12)
        for label in (self.place_label, self.user_label, self.time_label):
            top.addWidget(label)
            top.addSpacing(12)
        top.addStretch(1)

        self.curves = CurvePanel(self.worker, context.metricstore)
        self.console = ConsoleView(self.worker, context.metricstore, "")
        self.params = ParamsView()
        self.gpu = GpuUsagePlot(self.worker, context.monitor)
        menu = self.curves.controls.export_menu
        menu.addAction("Plot as PNG…", lambda: self._ask_export("png"))
        menu.addAction("Plot as SVG…", lambda: self._ask_export("svg"))
        menu.addAction("Metrics as CSV…", lambda: self._ask_export("csv"))
        self.tabs = QTabWidget()
        self.tabs.addTab(self.curves, "Curves")
        self.tabs.addTab(self.console, "Console")
        self.tabs.addTab(self.params, "Parameters")
        self.tabs.addTab(self.gpu, "GPU")
        self.tabs.setDocumentMode(True)
        self.status = PlainLabel()
        self.status.setStyleSheet("color: palette(dark);")

        box = QVBoxLayout(self)
        box.setContentsMargins(10, 8, 10, 6)
        box.addLayout(top)
        box.addWidget(self.exit_label)
        box.addWidget(self.tabs, 1)
        box.addWidget(self.status)

        self.bridge = EventBridge(context.bus, self, types=(RunChanged, PointsStored))
        self.bridge.points_stored.connect(self._on_points_stored)
        self.bridge.run_changed.connect(self._on_run_changed)
        self._clock = QTimer(self, interval=1000)
        self._clock.timeout.connect(self._show_time)
        self._clock.start()
        self.resize(1180, 780)
        self.setWindowTitle(run_id)
        self.reload_run()

    # -- the run record -------------------------------------------------------------------
    def reload_run(self) -> None:
        runstore, run_id = self.context.runstore, self.run_id
        metricstore = self.context.metricstore

        def work() -> tuple[Run | None, dict[str, Any]]:
            run = runstore.get(run_id)
            recorded = metricstore.params(run.host_run_id) if run is not None else {}
            return run, recorded

        self.worker.submit("run", work, self._apply_run, self._on_error)

    def _apply_run(self, result: tuple[Run | None, dict[str, Any]]) -> None:
        run, recorded = result
        if run is None:
            self.name_label.setText(self.run_id)
            self.exit_label.setText("This run is no longer in the store (deleted).")
            return
        previous, self.run = self.run, run
        key = run.host_run_id
        if key != self._key:
            self._key = key
            self.curves.set_runs([(key, run.name)], {key: run.started_at})
            self.console.set_run(key)
        else:
            self.curves.set_t0(key, run.started_at)
        self.params.set_params(run.params or run.spec.get("params", {}), recorded)
        if previous is None or (previous.host, previous.gpus, previous.started_at,
                                previous.ended_at) != (run.host, run.gpus, run.started_at,
                                                       run.ended_at):
            self.gpu.set_run(run.host, run.gpus, run.started_at, run.ended_at)
        self._show_header(run)
        if run.state.finished and previous is not None and not previous.state.finished:
            self.curves.notify_data()  # the last points may have come with the finish
            self.console.notify_log()
        self.run_changed.emit(run)

    def _show_header(self, run: Run) -> None:
        color = STATE_COLORS.get(run.state, "#5f6368")
        self.setWindowTitle(title_text(f"{run.name} — {run.state.value}"))
        self.name_label.setText(run.name)
        self.state_chip.setText(run.state.value)
        self.state_chip.setStyleSheet(f"background: {color}; color: white; border-radius: 8px;"
                                      " padding: 1px 8px; font-weight: bold;")
        gpus = ",".join(str(g) for g in run.gpus)
        self.place_label.setText(f"{run.host}:{gpus}" if run.host else "not placed yet")
        self.user_label.setText(f"user {run.user}")
        parts = []
        if run.exit_code is not None:
            parts.append(f"exit code {run.exit_code}")
        if run.reason:
            parts.append(run.reason)
        self.exit_label.setText(" · ".join(parts))
        self.exit_label.setVisible(bool(parts))
        self.exit_label.setStyleSheet(
            f"color: {color};" if run.state in (RunState.FAILED, RunState.LOST) else "")
        self._show_time()

    def _show_time(self) -> None:
        run = self.run
        if run is None:
            return
        if run.started_at is None:
            self.time_label.setText(f"queued {_when(run.queued_at or run.created_at)}")
            return
        end = run.ended_at if run.ended_at is not None else time.time()
        verb = "ran" if run.ended_at is not None else "running for"
        self.time_label.setText(f"started {_when(run.started_at)} · {verb} "
                                f"{format_duration(max(0.0, end - run.started_at))}")

    # -- live data ----------------------------------------------------------------------
    def _on_run_changed(self, event: RunChanged) -> None:
        if event.run_id == self.run_id:
            self.reload_run()

    def _on_points_stored(self, event: PointsStored) -> None:
        if event.run_key != self._key:
            return
        if METRICS in event.kinds:
            self.curves.notify_data(event.run_key)
        if LOG in event.kinds:
            self.console.notify_log()
        if METRICS in event.kinds and self.tabs.currentWidget() is self.params:
            self.reload_run()

    # -- exports ------------------------------------------------------------------------
    def _ask_export(self, kind: str) -> None:
        name = (self.run.name if self.run else self.run_id).replace("/", "_")
        path = ask_export_path(self, kind, name)
        if path:
            self.export(kind, path)

    def export(self, kind: str, path: str | Path,
               done: Callable[[str], None] | None = None) -> None:
        """PNG/SVG of the curves now (GUI thread: it renders); CSV on the worker."""
        if export_drawing(self.curves, kind, path):
            self._exported(f"Saved the plot to {path}", done)
        elif kind == "csv":
            metricstore, key = self.context.metricstore, self._key
            self.status.setText(f"Writing {path}…")
            self.worker.submit(
                f"csv-{path}", lambda: write_metrics_csv(metricstore, key, path),
                lambda rows: self._exported(f"Saved {rows:,} points to {path}", done),
                self._on_error)
        else:
            raise ValueError(f"unknown export kind {kind!r}")

    def _exported(self, message: str, done: Callable[[str], None] | None) -> None:
        self.status.setText(message)
        if done is not None:
            done(message)

    def _on_error(self, exc: BaseException) -> None:
        self.status.setText(f"{exc} — check that the Labdeck store is readable and retry.")

    # -- closing ------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop timers, listeners and the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.bridge.detach()
        self._clock.stop()
        self.curves.stop()
        self.console.stop()
        self.gpu.stop()
        self.worker.stop()
        _open.pop(self.run_id, None)
        self.closed.emit()


_open: dict[str, RunWindow] = {}


def open_run_window(run_id: str, context: RunContext) -> RunWindow:
    """Show the window of ``run_id`` (raising the one already open for it)."""
    window = _open.get(run_id)
    if window is None or window._closed:
        window = _open[run_id] = RunWindow(run_id, context)
    window.show()
    window.raise_()
    window.activateWindow()
    return window
