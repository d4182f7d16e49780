"""The curve panel: one plot per metric, each trace's curves created once, fed by a timer.

Data never moves on the GUI thread: a display timer (5 Hz) asks the window's
``DataWorker`` for new ``CurveFrame``s when something changed (new points, a zoom, the x
mode, the smoothing), and the answer is handed to the existing ``PlotDataItem``s with
``setData``. Decimation to ~2 points per pixel happens on the worker for the visible x
range, so pyqtgraph's own clipping and downsampling stay off.

Drawing is the GUI thread's cost (tests/bench/bench_plots.py): only traces whose frame
changed get ``setData`` (a finished run beside a live one is left alone). Past
``MANY_RUNS`` overlaid runs the faint raw curves are drawn for the hovered run only:
twenty semi-transparent noise bands are a smear that hides the smoothed lines a
comparison is read by, and they were half the paint time; the smoothed lines then drop
antialiasing. Wide pens are never antialiased (~30x slower to stroke).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QScrollArea, QSplitter, QStackedWidget, QVBoxLayout, QWidget

from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import PlainLabel, html_text
from app.ui.common.svg_export import export_svg
from app.ui.curves.curve_data import CurveFrame, PointSource, SeriesCache, series_order
from app.ui.curves.plot_axes import (
    RAW_ALPHA,
    color,
    nearest_trace,
    new_plot,
    plot_colors,
    readout_text,
    set_bottom_axis,
)
from app.ui.curves.plot_controls import PlotControls
from app.ui.curves.series_table import SeriesTable

DISPLAY_HZ = 5.0
ROW_MIN_PX = 210
WIDE_PEN_RUNS = 3
MANY_RUNS = 5  # above: raw curves of the hovered run only, no antialiasing
# Above MANY_RUNS a smoothed line gets a point every SPARSE_COLUMNS pixels: each line is
# still smooth to the eye, and a frame of 100 overlaid runs paints half the points.
SPARSE_COLUMNS = 2
HOVER_PX = 12
EMPTY_TEXT = ("No metrics yet.\nPrint lines like “step 100 loss=0.31”, call labdeck.log(…), "
              "or write TensorBoard events to $LABDECK_TB_DIR.")

Trace = tuple[str, str]  # (run id, series name)


class CurvePanel(QWidget):
    """Curves of one or more runs; a plot per series name, a trace per (run, series)."""

    frame_drawn = Signal()  # new frames were handed to the curves

    def __init__(self, worker: DataWorker, source: PointSource,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._cache = SeriesCache(source)
        self._key = f"curves-{id(self)}"
        self._runs: list[tuple[str, str]] = []  # (run id, label)
        self._t0: dict[str, float] = {}
        self._plots: dict[str, pg.PlotItem] = {}
        self._master: pg.PlotItem | None = None  # the one plot that autoranges x
        self._syncing = False
        self._items: dict[Trace, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._vlines: dict[str, pg.InfiniteLine] = {}
        self._frames: dict[Trace, CurveFrame] = {}
        self._raw_frames: dict[Trace, CurveFrame] = {}  # what each raw curve was given
        self._hovered: str | None = None  # run under the cursor (raw shown past MANY_RUNS)
        self._series_colors: dict[str, int] = {}
        self._data_dirty = True
        self._view_dirty = False
        self._inflight = False
        self._requested_range: tuple[float, float] | None = None
        self._requested_pixels = 0
        self.frames_applied = 0

        self.controls = PlotControls(self)
        self.controls.changed.connect(self._on_controls_changed)
        self.controls.reset_zoom.connect(self.reset_zoom)

        self._layout = pg.GraphicsLayoutWidget()
        self._layout.setBackground(plot_colors()[0])
        self._layout.setMinimumHeight(ROW_MIN_PX)
        self._layout.installEventFilter(self)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setWidget(self._layout)
        self._scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self._empty = PlainLabel(EMPTY_TEXT)
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setWordWrap(True)
        self._empty.setStyleSheet("color: palette(mid); font-size: 11pt;")
        self._stack = QStackedWidget()
        self._stack.addWidget(self._empty)
        self._stack.addWidget(self._scroll)
        self.table = SeriesTable()
        self.table.setMinimumHeight(70)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._stack)
        split.addWidget(self.table)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setChildrenCollapsible(False)
        split.setSizes([600, 120])
        self.splitter = split
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(4)
        box.addWidget(self.controls)
        box.addWidget(split, 1)

        self._mouse = pg.SignalProxy(self._layout.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._on_mouse_moved)
        self._range_timer = QTimer(self, singleShot=True, interval=120)
        self._range_timer.timeout.connect(self._on_range_settled)
        self._timer = QTimer(self, interval=int(1000 / DISPLAY_HZ))
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    # -- public API ----------------------------------------------------------------------
    def set_runs(self, runs: Sequence[tuple[str, str]],
                 t0: Mapping[str, float | None] | None = None) -> None:
        """Runs to show as (run id, label); ``t0`` = start time for relative x."""
        self._runs = list(runs)
        # One run: the plot titles say it all; several: the legend tells them apart.
        self.controls.legend_check.setChecked(len(self._runs) > 1)
        self._t0 = {k: float(v) for k, v in (t0 or {}).items() if v is not None}
        self.notify_data()

    def set_t0(self, run_id: str, t0: float | None) -> None:
        if t0 is not None and self._t0.get(run_id) != t0:
            self._t0[run_id] = float(t0)
            self._view_dirty = True

    def notify_data(self, run_id: str | None = None) -> None:
        """New points may exist (any run, or ``run_id``): picked up at the next tick."""
        if run_id is None or any(r == run_id for r, _ in self._runs):
            self._data_dirty = True

    def refresh_now(self) -> None:
        self._tick()

    def series_names(self) -> list[str]:
        return list(self._plots)

    def plot_for(self, series: str) -> pg.PlotItem | None:
        return self._plots.get(series)

    def raw_shown(self, run_id: str) -> bool:
        """Whether a run's faint raw curves are drawn (smoothing on; few runs, or hovered)."""
        return self.controls.smoothing > 0 and (len(self._runs) <= MANY_RUNS
                                                or run_id == self._hovered)

    def items(self, run_id: str, series: str) -> tuple[pg.PlotDataItem, pg.PlotDataItem] | None:
        """(raw, smoothed) curves of a trace; created once, reused for every update."""
        return self._items.get((run_id, series))

    def frame(self, run_id: str, series: str) -> CurveFrame | None:
        return self._frames.get((run_id, series))

    def pixels(self) -> int:
        """Width of the plotting area in pixels: the decimation's resolution."""
        for plot in self._plots.values():
            width = int(plot.getViewBox().width())
            if width > 0:
                return width
        cols = self._columns(max(1, len(self._plots)))
        return max(100, int(self._layout.width() / cols) - 60)

    def settled(self) -> bool:
        """Nothing pending: what is drawn matches the data, the view and its width."""
        return (not self._inflight and not self._data_dirty and not self._view_dirty
                and not self._range_timer.isActive() and self.frames_applied > 0
                and self._requested_pixels == self.pixels()
                and self._requested_range == self._visible_x_range())

    def reset_zoom(self) -> None:
        self._follow_x()
        for plot in self._plots.values():
            plot.enableAutoRange(y=True)
        self._view_dirty = True

    def _follow_x(self) -> None:
        """Let x follow the data again: the first plot autoranges, the others follow it."""
        for plot in self._plots.values():
            plot.enableAutoRange(x=plot is self._master)

    def stop(self) -> None:
        self._timer.stop()
        self._range_timer.stop()

    def export_image(self, path: str | Path) -> None:
        """PNG (or any image type Qt writes) of all plots as they are drawn now."""
        pyqtgraph.exporters.ImageExporter(self._layout.ci).export(str(path))

    def export_svg(self, path: str | Path) -> None:
        export_svg(self._layout.ci, path)

    # -- requests to the worker -------------------------------------------------------------
    def _tick(self) -> None:
        if self._inflight or not (self._data_dirty or self._view_dirty):
            return
        reread = self._data_dirty
        self._data_dirty = self._view_dirty = False
        runs = [r for r, _ in self._runs]
        cache = self._cache
        mode, beta = self.controls.x_mode, self.controls.smoothing
        t0 = dict(self._t0)
        x_range = self._visible_x_range()
        pixels = self.pixels()
        smooth_pixels = pixels // SPARSE_COLUMNS if len(runs) > MANY_RUNS else pixels
        self._requested_range, self._requested_pixels = x_range, pixels

        def work() -> tuple[dict, list[CurveFrame]]:
            infos = cache.refresh(runs) if reread else cache.infos
            starts = dict(t0)
            for run_id in runs:
                if run_id not in starts:
                    starts[run_id] = cache.first_wall(run_id) or 0.0
            traces = [(r, i.name) for r in runs for i in infos.get(r, [])]
            return infos, cache.frames(traces, mode, beta, starts, x_range, pixels,
                                       smooth_pixels)

        self._inflight = True
        self._worker.submit(self._key, work, self._apply, self._on_error)

    def _on_error(self, exc: BaseException) -> None:
        self._inflight = False
        self._empty.setText(f"Could not read the metrics: {exc}")
        self._stack.setCurrentWidget(self._empty)

    def _apply(self, result: tuple[dict, list[CurveFrame]]) -> None:
        self._inflight = False
        infos, frames = result
        new = {f.series for f in frames} - set(self._plots)
        for name in sorted(new, key=series_order):
            self._add_plot(name)
        changed: set[str] = set()
        for frame in frames:
            trace = (frame.run_id, frame.series)
            if self._frames.get(trace) is frame and trace in self._items:
                continue  # the worker's cache says nothing changed: leave the curve be
            _raw, smooth = self._ensure_items(frame.run_id, frame.series)
            self._frames[trace] = frame
            smooth.setData(frame.x_smooth, frame.y_smooth, **frame.draw_opts())
            changed.add(frame.series)
        self._sync_raw()
        for name in changed:
            # pyqtgraph autoranges lazily, inside the paint, and the new range asks for a
            # second full paint of the same frame: settle the range before any paint.
            self._plots[name].getViewBox().prepareForPaint()
        rows = self.table.rowCount()
        if not self.table.isHidden():  # the compare window shows its own table instead
            labels = dict(self._runs)
            colors = {key: self._color(*key) for key in self._items}
            self.table.update_infos(infos, labels, colors, series_order)
        if self.table.rowCount() != rows:
            # Room for the table's rows (up to six), the plots take the rest.
            total = sum(self.splitter.sizes())
            table = self.table.wanted_height()
            self.splitter.setSizes([max(total - table, ROW_MIN_PX), table])
        if self._plots:
            self._stack.setCurrentWidget(self._scroll)
        self.frames_applied += 1
        # New plots get their real width only once laid out: check the resolution again.
        self._range_timer.start()
        self.frame_drawn.emit()

    def _sync_raw(self) -> None:
        """Show the raw curves ``raw_shown`` asks for; one hidden gets its data when shown."""
        for trace, (raw, _smooth) in self._items.items():
            shown = self.raw_shown(trace[0])
            frame = self._frames.get(trace)
            if shown and frame is not None and self._raw_frames.get(trace) is not frame:
                raw.setData(frame.x_raw, frame.y_raw, **frame.draw_opts())
                self._raw_frames[trace] = frame
            raw.setVisible(shown)

    def _visible_x_range(self) -> tuple[float, float] | None:
        """None while x follows the data (autorange), else what the user zoomed to."""
        if self._master is None:
            return None
        vb = self._master.getViewBox()
        if vb.autoRangeEnabled()[0]:
            return None
        lo, hi = vb.viewRange()[0]
        return (float(lo), float(hi))

    # -- plots and curves ---------------------------------------------------------------
    def _ensure_items(self, run_id: str, series: str) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        key = (run_id, series)
        items = self._items.get(key)
        if items is not None:
            return items
        plot = self._plots.get(series) or self._add_plot(series)
        c = self._color(run_id, series)
        faint = QColor(c)
        faint.setAlpha(RAW_ALPHA)
        raw = pg.PlotDataItem(pen=pg.mkPen(faint, width=1))
        label = dict(self._runs).get(run_id, run_id)
        # A shade darker than the raw band, so it reads on top of dense noise. Wide pens
        # cost ~8x a 1 px one to draw (Qt strokes them): only while few runs are shown.
        width = 1.8 if len(self._runs) <= WIDE_PEN_RUNS else 1.0
        # The name is the legend's text, which pyqtgraph renders as HTML.
        smooth = pg.PlotDataItem(pen=pg.mkPen(c.darker(125), width=width), name=html_text(label),
                                 antialias=width == 1.0 and len(self._runs) <= MANY_RUNS)
        for item in (raw, smooth):
            # We decimate for the visible range ourselves; pyqtgraph must draw as given.
            item.setClipToView(False)
            item.setDownsampling(auto=False)
        raw.setZValue(1)
        smooth.setZValue(2)
        plot.addItem(raw)
        plot.addItem(smooth)
        self._items[key] = (raw, smooth)
        return raw, smooth

    def _add_plot(self, series: str) -> pg.PlotItem:
        plot = new_plot(series, self.controls.x_mode.value, self.controls.log_y,
                        self.controls.legend)
        if self._master is not None:
            plot.enableAutoRange(x=False)
            lo, hi = self._master.getViewBox().viewRange()[0]
            plot.setXRange(lo, hi, padding=0)
        else:
            self._master = plot
        # Our own x link: pyqtgraph's maps screen pixels, wrong for plots of unequal width.
        plot.getViewBox().sigXRangeChanged.connect(self._on_x_range_changed)
        vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#9aa0a6", width=1))
        vline.setVisible(False)
        plot.addItem(vline, ignoreBounds=True)
        self._vlines[series] = vline
        self._plots[series] = plot
        self._series_colors.setdefault(series, len(self._series_colors))
        self._relayout()
        return plot

    def _relayout(self) -> None:
        names = sorted(self._plots, key=series_order)
        self._plots = {name: self._plots[name] for name in names}
        plots = list(self._plots.values())
        cols = self._columns(len(plots))
        self._layout.ci.clear()
        for i, plot in enumerate(plots):
            # The last plot of a short row takes the rest of it (no empty cell).
            span = cols - i % cols if i == len(plots) - 1 else 1
            self._layout.addItem(plot, row=i // cols, col=i % cols, colspan=span)
        rows = math.ceil(len(plots) / cols)
        self._layout.setMinimumHeight(rows * ROW_MIN_PX)

    @staticmethod
    def _columns(n: int) -> int:
        return 1 if n <= 1 else 2 if n <= 4 else 3

    def _color(self, run_id: str, series: str) -> QColor:
        if len(self._runs) > 1:
            index = next((i for i, (r, _) in enumerate(self._runs) if r == run_id), 0)
        else:
            index = self._series_colors.setdefault(series, len(self._series_colors))
        return color(index)

    # -- user changes -------------------------------------------------------------------
    def _on_controls_changed(self, what: str) -> None:
        if what == "x_mode":
            for plot in self._plots.values():
                set_bottom_axis(plot, self.controls.x_mode.value)
            self._follow_x()
            self._view_dirty = True
        elif what == "log_y":
            for plot in self._plots.values():
                plot.setLogMode(False, self.controls.log_y)
                plot.enableAutoRange(y=True)
        elif what == "smoothing":
            self._view_dirty = True
            self._sync_raw()
        elif what == "legend":
            for plot in self._plots.values():
                if plot.legend is not None:
                    plot.legend.setVisible(self.controls.legend)
        self._tick()

    def _on_x_range_changed(self, source: pg.ViewBox, x_range: tuple[float, float]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            for plot in self._plots.values():
                vb = plot.getViewBox()
                if vb is not source:
                    vb.setXRange(x_range[0], x_range[1], padding=0)
        finally:
            self._syncing = False
        self._range_timer.start()

    def _on_range_settled(self) -> None:
        if (self._visible_x_range() != self._requested_range
                or self.pixels() != self._requested_pixels):
            self._view_dirty = True
            self._tick()

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._range_timer.start()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._layout and event.type() == QEvent.Type.Leave:
            for vline in self._vlines.values():
                vline.setVisible(False)
            self.controls.set_readout("")
            self._set_hovered(None)
        return super().eventFilter(watched, event)

    def _on_mouse_moved(self, args: tuple[QPointF]) -> None:
        pos = args[0]
        plot = next((p for p in self._plots.values()
                     if p.getViewBox().sceneBoundingRect().contains(pos)), None)
        if plot is None:
            return
        vb = plot.getViewBox()
        x = vb.mapSceneToView(pos).x()
        for vline in self._vlines.values():
            vline.setPos(x)
            vline.setVisible(True)
        self.controls.set_readout(self.readout(x))
        if len(self._runs) > MANY_RUNS:
            series = next(name for name, p in self._plots.items() if p is plot)
            self._set_hovered(nearest_trace(
                x, pos.y(), self._frames, series,
                lambda vx, vy: vb.mapViewToScene(QPointF(vx, vy)).y(),
                self.controls.log_y, HOVER_PX))

    def _set_hovered(self, run_id: str | None) -> None:
        if run_id != self._hovered:
            self._hovered = run_id
            self._sync_raw()

    def readout(self, x: float) -> str:
        """``step 1.2k · loss 0.312 · lr 3e-04``: nearest smoothed value of each trace."""
        return readout_text(x, self.controls.x_mode, self._frames, dict(self._runs))

