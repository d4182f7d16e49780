"""Load and memory of a run's GPUs over its lifetime, from what the cluster monitor saw.

GPU samples live only in the monitor's memory (its recent history), so this shows what
was recorded while Labdeck was open; while the window stays open it keeps every new
sample, so a long run's picture grows beyond the monitor's own window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.decimate import decimate
from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import PlainLabel
from app.ui.curves.plot_axes import color, plot_colors

REFRESH_MS = 2000
NOTE = ("Recorded while Labdeck was open: GPU samples are kept only while the app runs, "
        "so the times it was closed stay empty.")


@dataclass(slots=True)
class _Samples:
    """Everything seen of one GPU since the window opened (worker thread only)."""

    times: list[np.ndarray] = field(default_factory=list)
    util: list[np.ndarray] = field(default_factory=list)
    mem: list[np.ndarray] = field(default_factory=list)
    last_t: float = float("-inf")

    def add(self, times: Sequence[float], util: Sequence[float | None],
            mem: Sequence[float | None]) -> None:
        t = np.asarray(times, dtype=np.float64)
        keep = t > self.last_t
        if not keep.any():
            return
        self.times.append(t[keep])
        self.util.append(np.array([np.nan if v is None else v for v in util])[keep])
        self.mem.append(np.array([np.nan if v is None else v for v in mem])[keep])
        self.last_t = float(t[keep][-1])
        if len(self.times) > 64:  # keep the list short: concatenate now and then
            self.times = [np.concatenate(self.times)]
            self.util = [np.concatenate(self.util)]
            self.mem = [np.concatenate(self.mem)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.times:
            empty = np.empty(0)
            return empty, empty, empty
        return (np.concatenate(self.times), np.concatenate(self.util),
                np.concatenate(self.mem))


class GpuUsagePlot(QWidget):
    refreshed = Signal()

    def __init__(self, worker: DataWorker, monitor: ClusterMonitor | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._monitor = monitor
        self._key = f"gpu-{id(self)}"
        self._host: str | None = None
        self._gpus: tuple[int, ...] = ()
        self._span: tuple[float, float | None] = (0.0, None)
        self._samples: dict[int, _Samples] = {}
        self._inflight = False
        self._curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self.note = PlainLabel(NOTE)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #5f6368; padding: 4px 0px;")
        self.graphs = pg.GraphicsLayoutWidget()
        self.graphs.setBackground(plot_colors()[0])
        self.load_plot = self._make_plot("GPU load", "%", row=0)
        self.mem_plot = self._make_plot("GPU memory", "%", row=1)
        self.mem_plot.setXLink(self.load_plot)
        self.empty = PlainLabel()
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: palette(mid); font-size: 11pt;")
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.note)
        box.addWidget(self.graphs, 1)
        box.addWidget(self.empty, 1)
        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._show_empty("The run has not been placed on GPUs yet.")

    def set_run(self, host: str | None, gpus: Sequence[int], started_at: float | None,
                ended_at: float | None) -> None:
        changed = (host, tuple(gpus)) != (self._host, self._gpus)
        self._host, self._gpus = host, tuple(gpus)
        self._span = (started_at or 0.0, ended_at)
        if changed:
            self._samples = {}
        if not host or not gpus:
            self._show_empty("The run has not been placed on GPUs yet.")
            self._timer.stop()
            return
        if self._monitor is None:
            self._show_empty("GPU history is only available in the Labdeck window.")
            return
        for gpu in self._gpus:
            self._curve(self.load_plot, gpu)
            self._curve(self.mem_plot, gpu)
        if ended_at is None or ended_at > time.time() - REFRESH_MS / 1000:
            self._timer.start()
        else:
            self._timer.stop()
        self.refresh()

    def stop(self) -> None:
        self._timer.stop()

    def curve(self, plot: str, gpu: int) -> pg.PlotDataItem | None:
        return self._curves.get((plot, gpu))

    def refresh(self) -> None:
        monitor, host = self._monitor, self._host
        if monitor is None or host is None or self._inflight:
            return
        gpus, samples = self._gpus, self._samples
        start, end = self._span
        pixels = max(200, int(self.load_plot.getViewBox().width()) or 600)

        def work() -> dict[int, tuple[np.ndarray, ...]]:
            out: dict[int, tuple[np.ndarray, ...]] = {}
            for gpu in gpus:
                hist = monitor.history(host, gpu)
                entry = samples.setdefault(gpu, _Samples())
                entry.add(list(hist.times), list(hist.util_pct), list(hist.mem_pct))
                t, u, m = entry.arrays()
                inside = (t >= start) & (t <= (end if end is not None else np.inf))
                t, u, m = t[inside], u[inside], m[inside]
                tu, uu = decimate(t, u, None, pixels)
                tm, mm = decimate(t, m, None, pixels)
                out[gpu] = (tu, uu, tm, mm)
            return out

        self._inflight = True
        self._worker.submit(self._key, work, self._apply, self._on_error)

    def _on_error(self, exc: BaseException) -> None:
        self._inflight = False
        self._show_empty(f"Could not read the GPU history: {exc}")

    def _apply(self, result: dict[int, tuple[np.ndarray, ...]]) -> None:
        self._inflight = False
        points = 0
        for gpu, (tu, uu, tm, mm) in result.items():
            self._curve(self.load_plot, gpu).setData(tu, uu)
            self._curve(self.mem_plot, gpu).setData(tm, mm)
            points += len(tu)
        if points:
            self.graphs.show()
            self.empty.hide()
        else:
            host = self._host or "the host"
            self._show_empty(f"No GPU samples of {host} during this run: Labdeck was not "
                             "open (or the host was offline) while it ran.")
        self.refreshed.emit()

    def _show_empty(self, text: str) -> None:
        self.empty.setText(text)
        self.empty.show()
        self.graphs.hide()

    def _make_plot(self, title: str, unit: str, row: int) -> pg.PlotItem:
        plot = self.graphs.addPlot(row=row, col=0,
                                   axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        plot.setTitle(title, bold=True, size="10pt", color=plot_colors()[1])
        plot.setLabel("left", unit)
        plot.setYRange(0, 100, padding=0.02)
        plot.setMouseEnabled(x=True, y=False)
        plot.showGrid(x=True, y=True, alpha=0.18)
        plot.hideButtons()
        if row == 0:  # one legend is enough: both plots use the same colours
            plot.addLegend(offset=(-8, -8), labelTextColor=plot_colors()[2],
                           brush=(255, 255, 255, 220))
        for name in ("left", "bottom"):
            plot.getAxis(name).setTextPen(plot_colors()[2])
            plot.getAxis(name).setPen(plot_colors()[3])
        return plot

    def _curve(self, plot: pg.PlotItem, gpu: int) -> pg.PlotDataItem:
        which = "load" if plot is self.load_plot else "memory"
        item = self._curves.get((which, gpu))
        if item is None:
            item = pg.PlotDataItem(pen=pg.mkPen(color(gpu), width=1.5), name=f"GPU {gpu}")
            plot.addItem(item)
            self._curves[(which, gpu)] = item
        return item
