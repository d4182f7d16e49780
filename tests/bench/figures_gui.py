"""The suite's Qt figures measured with the GUI benchmark scripts' own code: opening a
finished 1M-point run and overlaid live curves (bench_plots, against plain pyqtgraph
``setData`` of the full arrays), and the runs table over 100k runs (bench_runs_table,
against a ``QStandardItemModel`` filled with the same rows).

Each ``measure_*(mode)`` returns figures for ``tests/bench/run.py``; run offscreen.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.benchlib import figure, median, pick


def measure_plots(mode: str) -> list[dict[str, Any]]:
    from app.ui.shell.app import create_application
    from tests.bench import bench_plots as bp

    app = create_application([])
    out = []
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-plots-") as tmp:
        home = Path(tmp)
        os.environ["LABDECK_HOME"] = tmp
        if mode != "smoke":  # bench_open always ingests 1M points (about 10 s here)
            opened = bp.bench_open(app, home / "open")
            plain = bp.bench_plain(app, 1, 1_000_000)
            out.append(figure(
                "open a finished 1M-point run", opened, "s", baseline=plain,
                baseline_label="pyqtgraph setData of the full array + paint",
                target="< 0.5 s", max_value=0.5,
                note="open_run_window to its curve drawn and the window painted (best of 3)"))
        for runs, n in pick(mode, [(3, 2_000)], [(20, 100_000), (100, 10_000)],
                            [(20, 100_000), (100, 10_000)]):
            frames = bp.bench_live(app, home / f"live{runs}", runs=runs, n=n)
            # "20 live": every run of the overlay gets new points ("1 live": one of them).
            _apply, gui, whole = frames["20 live"]
            _apply1, gui1, _whole1 = frames["1 live"]
            plain = bp.bench_plain(app, runs, n)
            label = f"{runs}×{n // 1000}k"
            base = "pyqtgraph setData of full arrays + paint"
            out.append(figure(
                f"overlay {label}: GUI-thread frame", gui * 1e3, "ms",
                baseline=plain * 1e3, baseline_label=base, target="≥ 3× faster, < 50 ms",
                max_value=50, min_ratio=3,
                note="new points for every run, setData + paint on the GUI thread (median)"))
            out.append(figure(
                f"overlay {label}, one run live: GUI-thread frame", gui1 * 1e3, "ms",
                baseline=plain * 1e3, baseline_label=base, target="≥ 3× faster, < 50 ms",
                max_value=50, min_ratio=3,
                note="new points for one run beside finished ones (median)"))
            out.append(figure(
                f"overlay {label}: whole frame", whole * 1e3, "ms",
                baseline=plain * 1e3, baseline_label=base, target="≥ 3× faster, < 50 ms",
                max_value=50, min_ratio=3,
                note="request → re-read, smooth, decimate on the worker → painted (median)"))
    return out


def measure_runs_table(mode: str) -> list[dict[str, Any]]:
    from PySide6.QtGui import QStandardItemModel
    from PySide6.QtWidgets import QApplication, QTableView

    from app.core.metrics.metricstore import MetricStore
    from app.core.queue.runstore import RunStore
    from app.ui.common.context import AppContext
    from tests.bench import bench_runs_table as brt

    n = pick(mode, 2_000, 100_000, 100_000)
    opens_n = pick(mode, 1, 3, 5)
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-table-") as tmp:
        os.environ["LABDECK_HOME"] = tmp
        store = brt.build_store(n)
        ctx = AppContext(store, RunStore(store), MetricStore(store))
        warm = QTableView()  # Qt's first-widget costs, as bench_runs_table pays them
        warm.setModel(QStandardItemModel(10, 9, warm))
        warm.resize(*brt.SIZE)
        warm.show()
        app.processEvents()
        warm.close()
        opens = []
        for attempt in range(opens_n):
            page, first, _whole, _longest = brt.open_page(ctx)
            opens.append(first)
            if attempt < opens_n - 1:
                page.stop()
                page.close()
                page.deleteLater()
                app.processEvents()
        count = page.model.rowCount()
        rows = len(brt.visible_rows(page.view))
        pages = [count // 2 + k * rows for k in range(1, pick(mode, 5, 16, 60))]
        ours_scroll, _ = brt.scroll_steps(page.view, pages)
        page.stop()
        page.close()
        started = time.perf_counter()
        std, _built = brt.standard_model(store, ctx.metricstore)
        view = QTableView()
        view.resize(*brt.SIZE)
        view.setModel(std)
        view.show()
        app.processEvents()
        view.viewport().repaint()
        std_first = time.perf_counter() - started
        std_scroll, _ = brt.scroll_steps(view, pages)
        view.close()
        store.close()
        app.processEvents()
    first = median(opens)
    return [
        figure("runs table: open with 100k runs", first, "s", baseline=std_first,
               baseline_label="QStandardItemModel filled with the same rows",
               target="< 0.5 s; ≥ 10× faster", max_value=0.5, min_ratio=10,
               note=f"{n:,} runs, first painted screen of real rows, median of {opens_n}"),
        figure("runs table: scroll one page", median(ours_scroll) * 1e3, "ms",
               baseline=median(std_scroll) * 1e3,
               baseline_label="QStandardItemModel filled with the same rows",
               target="(no target)",
               note=f"page-down × {len(pages)} from the middle, GUI time to scroll + paint"),
    ]
