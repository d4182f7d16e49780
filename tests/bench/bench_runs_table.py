"""Open the Runs page over 100k runs: time to first paint (target < 0.5 s), scrolling, and
the same table as a ``QStandardItemModel`` filled with every row (target: ≥ 10× slower).

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_runs_table.py [N]``.
Not a pytest module: timings on a shared machine are for reading, not asserting. The
store is built once with direct INSERTs (``tests/harness/runs_data.py``) and kept in
/tmp/labdeck-bench-runs-N.sqlite3 for the next run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QAbstractItemModel, QElapsedTimer, QEventLoop, QTimer
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QApplication, QTableView

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs_filter import RunsQuery
from app.core.queue.runstore import RunStore
from app.core.runs_catalog import RunsCatalog
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.runs import format as fmt
from app.ui.runs.model import RunsTableModel
from app.ui.runs.page import RunsPage
from tests.harness.runs_data import fill_runs

SIZE = (1280, 800)


def spin_until(cond, timeout_s: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met")
        loop = QEventLoop()
        QTimer.singleShot(1, loop.quit)
        loop.exec()


def visible_rows(view: QTableView) -> range:
    top = view.rowAt(0)
    bottom = view.rowAt(view.viewport().height() - 1)
    bottom = view.model().rowCount() - 1 if bottom < 0 else bottom
    return range(max(top, 0), bottom + 1)


def shown(view: QTableView) -> bool:
    model = view.model()
    return all(model.index(r, 0).data() != "…" for r in visible_rows(view))


def build_store(n: int) -> Store:
    path = Path(f"/tmp/labdeck-bench-runs-{n}.sqlite3")
    if not path.exists():
        t = time.perf_counter()
        with Store.open(path) as store:
            fill_runs(store, n, seed=1)
        print(f"built a store of {n:,} runs in {time.perf_counter() - t:.1f} s: {path}")
    return Store.open(path)


def open_page(ctx: AppContext) -> tuple[RunsPage, float, float]:
    """(page, seconds to the first painted screen of real rows, seconds until the whole
    id list is in, longest GUI-thread stretch meanwhile)."""
    gaps: list[float] = []
    clock = QElapsedTimer()
    beat = QTimer(interval=0)
    clock.start()

    def tick() -> None:
        gaps.append(clock.restart() / 1000)

    beat.timeout.connect(tick)
    t0 = time.perf_counter()
    page = RunsPage(ctx)
    page.resize(*SIZE)
    page.show()
    beat.start()
    spin_until(lambda: page.model.rowCount() > 0 and shown(page.view))
    page.view.viewport().repaint()
    first_paint = time.perf_counter() - t0
    spin_until(page.model.is_loaded)
    whole = time.perf_counter() - t0
    beat.stop()
    return page, first_paint, whole, max(gaps, default=0.0)


def scroll_steps(view: QTableView, rows: list[int]) -> tuple[list[float], list[float]]:
    """Per step: GUI time to scroll and paint (placeholders allowed), and time until
    every visible row shows its data."""
    frame, complete = [], []
    for row in rows:
        t = time.perf_counter()
        view.scrollTo(view.model().index(row, 0), QTableView.ScrollHint.PositionAtTop)
        view.viewport().repaint()
        frame.append(time.perf_counter() - t)
        spin_until(lambda: shown(view))
        view.viewport().repaint()
        complete.append(time.perf_counter() - t)
    return frame, complete


def standard_model(store: Store, metricstore: MetricStore) -> tuple[QStandardItemModel, float]:
    """Every run read and turned into items, as a naive table would do."""
    t = time.perf_counter()
    catalog = RunsCatalog(store, metricstore)
    ids = catalog.ids(RunsQuery())
    rows = catalog.rows(ids)
    columns = [fmt.Column("base", key, title) for key, title in fmt.BASE_COLUMNS]
    model = QStandardItemModel(len(ids), len(columns))
    model.setHorizontalHeaderLabels([c.title for c in columns])
    now = time.time()
    for r, run_id in enumerate(ids):
        row = rows[run_id]
        for c, column in enumerate(columns):
            model.setItem(r, c, QStandardItem(fmt.display(row, column, now)))
    return model, time.perf_counter() - t


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    app = QApplication.instance() or QApplication([])
    store = build_store(n)
    ctx = AppContext(store, RunStore(store), MetricStore(store))
    print(f"runs: {RunsCatalog(store, MetricStore(store)).change_token().count:,}")

    # The app has its main window up before the Runs page opens: pay Qt's first-widget
    # costs (fonts, style) here, not in the measurement.
    warm = QTableView()
    warm.setModel(QStandardItemModel(10, 9, warm))
    warm.resize(*SIZE)
    warm.show()
    app.processEvents()
    warm.viewport().repaint()
    warm.close()
    opens = []
    for attempt in range(3):  # the first one also meets a cold page cache
        page, first, whole, longest = open_page(ctx)
        opens.append(first)
        print(f"RunsTableModel open #{attempt + 1}: first paint {first * 1000:.0f} ms "
              f"(target < 500 ms), all {n:,} rows scrollable {whole * 1000:.0f} ms, "
              f"longest GUI-thread stretch {longest * 1000:.1f} ms")
        if attempt < 2:
            page.stop()
            page.close()
            page.deleteLater()
            app.processEvents()
    first = statistics.median(opens)
    model = page.model
    assert isinstance(model, RunsTableModel)
    count = model.rowCount()
    targets = [count - 1, count // 2, 0, count // 4, 3 * count // 4, count - 200, 500]
    frame, complete = scroll_steps(page.view, targets)
    print(f"  jumps (bottom, middle, top, …): frame {ms(frame)}; rows shown {ms(complete)}")
    page_rows = len(visible_rows(page.view))
    pages = [count // 2 + k * page_rows for k in range(1, 40)]
    frame, complete = scroll_steps(page.view, pages)
    print(f"  page-down × 39 from the middle: frame {ms(frame)}; rows shown {ms(complete)}")
    print(f"  rows cached: {model.cached_count():,} of {count:,}")
    page.stop()
    page.close()

    t = time.perf_counter()
    std, built = standard_model(store, ctx.metricstore)
    view = QTableView()
    view.resize(*SIZE)
    view.setModel(std)
    view.show()
    app.processEvents()  # laid out and exposed, as the page was by its event loop
    view.viewport().repaint()
    std_first = time.perf_counter() - t
    print(f"QStandardItemModel: first paint {std_first * 1000:.0f} ms "
          f"(reading + building {built * 1000:.0f} ms, all on the GUI thread)")
    frame, _ = scroll_steps(view, targets)
    print(f"  jumps: frame {ms(frame)}")
    print(f"ratio (standard / RunsTableModel, first paint, median of the opens): "
          f"{std_first / first:.1f}× (target ≥ 10×)")
    _keep: QAbstractItemModel = std
    view.close()
    store.close()
    app.processEvents()


if __name__ == "__main__":
    main()
