"""The comparison's curve panel: ``CurvePanel`` with a stable colour per run, runs that can
be hidden or dropped, a choice of which metrics are plotted, and a light or dark theme.

``CurvePanel`` colours a run by its position in the run list and never removes a curve;
a comparison adds and removes runs while it is open, so colours here follow the index the
window gave each run (kept while the run stays), and a removed run's curves leave every
plot. Plots of metrics that are not chosen leave the layout but keep their curves, so
choosing them again is instant. The plot that autoranges x (the others follow it) is
always a shown one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QWidget

from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import html_text
from app.ui.compare.colors import PlotTheme, plot_theme, run_color
from app.ui.curves.curve_data import PointSource, series_order
from app.ui.curves.plot_axes import RAW_ALPHA
from app.ui.curves.plots import MANY_RUNS, ROW_MIN_PX, CurvePanel

# Wide pens cost Qt far more to stroke (see plots.WIDE_PEN_RUNS): only for a handful of runs.
WIDE_PEN_MAX_RUNS = 6
WIDE_PEN = 1.7


class ComparePanel(CurvePanel):
    """Keys are the runs' metric store ids (``Run.host_run_id``), as in ``CurvePanel``."""

    run_toggled = Signal(str, bool)  # run key, now visible: a click in an in-plot legend
    colors_changed = Signal()  # the theme changed, and with it every run's colour

    def __init__(self, worker: DataWorker, source: PointSource,
                 parent: QWidget | None = None) -> None:
        super().__init__(worker, source, parent)
        self._indices: dict[str, int] = {}
        self._hidden: set[str] = set()
        self._shown_series: set[str] | None = None  # None: every metric
        self.theme = plot_theme(self.palette())
        # The comparison has its own last/min/max table with run colours and CSV export.
        self.table.hide()
        self._apply_theme()

    # -- runs -------------------------------------------------------------------------
    def set_runs(self, runs: Sequence[tuple[str, str]],
                 t0: Mapping[str, float | None] | None = None) -> None:
        keep = {key for key, _ in runs}
        self._drop_traces({key for key, _ in self._runs} - keep)
        self._hidden &= keep
        # CurvePanel turns its in-plot legends on for several runs; the comparison's
        # own legend lists the runs, so keep whatever the user chose.
        legend = self.controls.legend_check.isChecked()
        super().set_runs(runs, t0)
        self.controls.legend_check.setChecked(legend)

    def run_keys(self) -> list[str]:
        return [key for key, _ in self._runs]

    def set_color_indices(self, indices: Mapping[str, int]) -> None:
        """Run key → palette index; curves already drawn take their new colour."""
        if dict(indices) != self._indices:
            self._indices = dict(indices)
            self._restyle_traces()

    def run_color(self, key: str) -> QColor:
        return run_color(self._indices.get(key, 0), self.theme.background)

    def set_run_visible(self, key: str, visible: bool) -> None:
        if visible:
            self._hidden.discard(key)
        else:
            self._hidden.add(key)
        for (run_key, _series), (_raw, smooth) in self._items.items():
            if run_key == key:
                smooth.setVisible(visible)
        self._sync_raw()

    def raw_shown(self, run_id: str) -> bool:
        return run_id not in self._hidden and super().raw_shown(run_id)

    def run_visible(self, key: str) -> bool:
        return key not in self._hidden

    def pen_color(self, key: str, series: str) -> QColor | None:
        """The colour the smoothed curve of a trace is drawn in (tests, legends)."""
        items = self._items.get((key, series))
        if items is None:
            return None
        return QColor(items[1].opts["pen"].color())

    def curve_visible(self, key: str, series: str) -> bool:
        items = self._items.get((key, series))
        return items is not None and items[1].isVisible()

    def plot_viewport(self) -> QWidget:
        """The widget the plots are painted on (drop targets are installed there)."""
        return self._layout.viewport()

    def _drop_traces(self, keys: Collection[str]) -> None:
        for trace in [t for t in self._items if t[0] in keys]:
            raw, smooth = self._items.pop(trace)
            self._frames.pop(trace, None)
            self._raw_frames.pop(trace, None)
            plot = self._plots.get(trace[1])
            if plot is not None:
                plot.removeItem(raw)
                plot.removeItem(smooth)

    # -- metrics ----------------------------------------------------------------------
    def set_shown_series(self, names: Collection[str] | None) -> None:
        """Plot only these metrics (None: all of them)."""
        shown = None if names is None else set(names)
        if shown != self._shown_series:
            self._shown_series = shown
            self._relayout()
            self._range_timer.start()

    def shown_plots(self) -> list[str]:
        """Names of the plots in the layout now, in layout order."""
        return [name for name in self._plots if self._is_shown(name)]

    def _is_shown(self, name: str) -> bool:
        return self._shown_series is None or name in self._shown_series

    def _relayout(self) -> None:
        names = sorted(self._plots, key=series_order)
        self._plots = {name: self._plots[name] for name in names}
        shown = [plot for name, plot in self._plots.items() if self._is_shown(name)]
        cols = self._columns(len(shown))
        self._layout.ci.clear()
        for i, plot in enumerate(shown):
            span = cols - i % cols if i == len(shown) - 1 else 1
            self._layout.addItem(plot, row=i // cols, col=i % cols, colspan=span)
        for plot in self._plots.values():
            plot.setVisible(plot in shown)
        rows = max(1, -(-len(shown) // cols))
        self._layout.setMinimumHeight(rows * ROW_MIN_PX)
        self._pick_master(shown)

    def _pick_master(self, shown: list[pg.PlotItem]) -> None:
        """A plot outside the layout is never painted, so it cannot autorange: hand the
        x autorange (or the user's zoom) to the first shown plot."""
        old = self._master
        if not shown or old in shown:
            return
        follow = old is None or bool(old.getViewBox().autoRangeEnabled()[0])
        new = shown[0]
        if old is not None:
            old.enableAutoRange(x=False)
            lo, hi = old.getViewBox().viewRange()[0]
            if not follow:
                new.setXRange(lo, hi, padding=0)
        self._master = new
        new.enableAutoRange(x=follow)

    # -- curves -----------------------------------------------------------------------
    def _color(self, run_id: str, series: str) -> QColor:
        return self.run_color(run_id)

    def _ensure_items(self, run_id: str, series: str) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        fresh = (run_id, series) not in self._items
        raw, smooth = super()._ensure_items(run_id, series)
        if fresh:
            self._style_trace(run_id, raw, smooth)
        return raw, smooth

    def _style_trace(self, key: str, raw: pg.PlotDataItem, smooth: pg.PlotDataItem) -> None:
        c = self.run_color(key)
        faint = QColor(c)
        faint.setAlpha(RAW_ALPHA)
        raw.setPen(pg.mkPen(faint, width=1))
        # The exact run colour (CurvePanel darkens it, which sinks into a dark background).
        width = WIDE_PEN if len(self._runs) <= WIDE_PEN_MAX_RUNS else 1.0
        # Antialiasing a wide pen costs ~30x a plain one (measured): thin lines only.
        smooth.opts["antialias"] = width == 1.0 and len(self._runs) <= MANY_RUNS
        smooth.setPen(pg.mkPen(c, width=width))
        if key in self._hidden:
            raw.setVisible(False)
            smooth.setVisible(False)

    def _restyle_traces(self) -> None:
        for (key, _series), (raw, smooth) in self._items.items():
            self._style_trace(key, raw, smooth)

    def _apply(self, result: tuple[dict, list]) -> None:
        super()._apply(result)
        # Curves made for a run while it is hidden start hidden (raw ones: ``raw_shown``).
        for (key, _series), (_raw, smooth) in self._items.items():
            if key in self._hidden:
                smooth.setVisible(False)

    def _add_plot(self, series: str) -> pg.PlotItem:
        plot = super()._add_plot(series)
        self._style_plot(plot, series)
        if plot.legend is not None:
            plot.legend.sigSampleClicked.connect(self._on_sample_clicked)
        return plot

    def _on_sample_clicked(self, item: pg.PlotDataItem) -> None:
        # pyqtgraph has toggled this one curve; the run goes with it in every plot.
        key = next((k for (k, _s), (_raw, smooth) in self._items.items() if smooth is item),
                   None)
        if key is not None:
            visible = bool(item.isVisible())
            self.set_run_visible(key, visible)
            self.run_toggled.emit(key, visible)

    # -- theme ------------------------------------------------------------------------
    def background(self) -> QColor:
        return QColor(self.theme.background)

    def _apply_theme(self) -> None:
        self._layout.setBackground(self.theme.background)
        for series, plot in self._plots.items():
            self._style_plot(plot, series)
        self._restyle_traces()

    def _style_plot(self, plot: pg.PlotItem, series: str) -> None:
        theme: PlotTheme = self.theme
        plot.setTitle(html_text(series), bold=True, size="10pt", color=theme.title)
        plot.showGrid(x=True, y=True, alpha=theme.grid_alpha)
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setTextPen(theme.text)
            axis.setPen(theme.axis)
        if plot.legend is not None:
            plot.legend.setLabelTextColor(theme.text)

    def _on_controls_changed(self, what: str) -> None:
        super()._on_controls_changed(what)
        if what == "x_mode":  # new bottom axes, styled light by CurvePanel
            for series, plot in self._plots.items():
                self._style_plot(plot, series)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "theme"):
            theme = plot_theme(self.palette())
            if theme != self.theme:
                self.theme = theme
                self._apply_theme()
                self.colors_changed.emit()
