"""The curve panel over a real store: one curve pair per series, decimated, live, exported."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.data_worker import DataWorker
from app.ui.curves.curve_data import SeriesCache, XMode, _ema_loop, ema_continue, ema_debiased
from app.ui.curves.plots import MANY_RUNS, SPARSE_COLUMNS, CurvePanel
from app.ui.shell.selfcheck import is_blank
from tests.harness.run_fixtures import add_points, key_of, open_store, start_run, training_curves

pytestmark = pytest.mark.gui
N = 20_000
WALL0 = 1.7e9


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = open_store(tmp_path)
    runstore, ms = RunStore(store), MetricStore(store)
    run_id = start_run(runstore, started_at=WALL0 - 60)
    key = key_of(runstore, run_id)
    add_points(ms, key, training_curves(N), wall0=WALL0)
    yield ms, key
    store.close()


@pytest.fixture
def panel(qtbot, stored):
    ms, key = stored
    worker = DataWorker("labdeck-test-data")
    view = CurvePanel(worker, ms)
    qtbot.addWidget(view)
    view.resize(1100, 700)
    view.show()
    with qtbot.waitSignal(view.frame_drawn, timeout=10_000):
        view.set_runs([(key, "run")], {key: WALL0 - 60})
    qtbot.waitUntil(view.settled, timeout=10_000)
    yield view
    view.stop()
    worker.stop()


def _redraw(qtbot, view: CurvePanel, action) -> None:
    with qtbot.waitSignal(view.frame_drawn, timeout=10_000):
        action()
    qtbot.waitUntil(view.settled, timeout=10_000)


def test_ema_is_tensorboards_debiased_average() -> None:
    rng = np.random.default_rng(7)
    y = rng.normal(5, 2, 3000)
    y[[10, 500]] = np.nan
    for beta in (0.0, 0.01, 0.6, 0.95, 0.99):
        out = ema_debiased(y, beta)
        finite = np.isfinite(y)
        expected = y[finite] if beta == 0 else _ema_loop(y[finite], beta)
        np.testing.assert_allclose(out[finite], expected, rtol=1e-12, atol=1e-12)
        assert out[0] == y[0]  # debiasing: the first smoothed value is the first value
        assert np.isnan(out[10]) and np.isnan(out[500])
    flat = ema_debiased(np.full(100, 3.0), 0.9)
    np.testing.assert_allclose(flat, 3.0)  # no bias toward 0 at the start


def test_ema_continues_from_the_last_state_exactly() -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(1, 0.5, 6000)
    y[[2, 4000, 4001]] = np.nan
    for beta in (0.3, 0.9, 0.999):
        full = ema_debiased(y, beta)
        for cut in (1, 3, 4000, 5999):
            head = ema_debiased(y[:cut], beta)
            finite = np.isfinite(y[:cut])
            tail = ema_continue(y[cut:], beta, float(head[finite][-1]), int(finite.sum()))
            np.testing.assert_allclose(np.concatenate([head, tail]), full, rtol=1e-10,
                                       atol=1e-12)


def test_one_curve_pair_per_series_decimated_with_table(panel, stored) -> None:
    ms, key = stored
    assert sorted(panel.series_names()) == ["lr", "train/loss", "val/acc"]
    assert panel.series_names()[0] == "train/loss"  # losses first
    px = panel.pixels()
    assert 200 < px < 1100
    for info in ms.series(key):
        raw, smooth = panel.items(key, info.name)
        x, _y = smooth.getData()
        assert 2 < len(x) <= 2 * px + 4
        assert x[0] == 0 and x[-1] == N - 1  # first and last points exact
        xr, yr = raw.getData()
        assert len(xr) <= 2 * px + 4 and yr[-1] == info.last_value
        assert panel.table.value_at(key, info.name, "Last") == info.last_value
        assert panel.table.value_at(key, info.name, "Points") == N
        row = panel.table.row_of(key, info.name)
        assert panel.table.item(row, 1).text() == f"{info.last_value:.4g}"
    # pyqtgraph must draw what we give it: no clipping or downsampling of its own.
    raw, smooth = panel.items(key, "train/loss")
    assert not smooth.opts["clipToView"] and not smooth.opts["autoDownsample"]
    assert smooth.opts["downsample"] == 1


def test_smoothing_is_applied_before_decimation(qtbot, panel, stored) -> None:
    ms, key = stored
    values = ms.points(key, "train/loss").value
    _redraw(qtbot, panel, lambda: panel.controls.set_smoothing(0.0))
    raw, smooth = panel.items(key, "train/loss")
    assert not raw.isVisible()
    x0, y0 = smooth.getData()
    np.testing.assert_array_equal(y0, values[x0.astype(int)])
    _redraw(qtbot, panel, lambda: panel.controls.set_smoothing(0.9))
    assert raw.isVisible() and raw.opts["pen"].color().alpha() < 100
    x, y = smooth.getData()
    full = ema_debiased(values, 0.9)
    np.testing.assert_allclose(y, full[x.astype(int)], rtol=1e-12)
    assert y[0] == values[0]
    assert np.std(np.diff(y)) < 0.5 * np.std(np.diff(y0))  # visibly smoother
    assert panel.items(key, "train/loss") == (raw, smooth)


def test_x_modes_and_log_scale(qtbot, panel, stored) -> None:
    ms, key = stored
    arrays = ms.points(key, "lr")
    _redraw(qtbot, panel, lambda: panel.controls.set_x_mode(XMode.WALL))
    x, _ = panel.items(key, "lr")[1].getData()
    assert x[0] == arrays.wall[0] and x[-1] == arrays.wall[-1]
    assert type(panel.plot_for("lr").getAxis("bottom")).__name__ == "DateAxisItem"
    _redraw(qtbot, panel, lambda: panel.controls.set_x_mode(XMode.RELATIVE))
    x, _ = panel.items(key, "lr")[1].getData()
    assert x[0] == pytest.approx(arrays.wall[0] - (WALL0 - 60))
    assert "1m 00s" in panel.readout(60.0)
    _redraw(qtbot, panel, lambda: panel.controls.set_x_mode(XMode.STEP))
    panel.controls.log_check.setChecked(True)
    _, y = panel.items(key, "train/loss")[1].getData()
    frame = panel.frame(key, "train/loss")
    np.testing.assert_allclose(y, np.log10(frame.y_smooth))
    assert panel.plot_for("train/loss").getViewBox().state["logMode"][1]


def test_zoom_refetches_detail_for_the_visible_range(qtbot, panel, stored) -> None:
    _ms, key = stored
    _raw, smooth = panel.items(key, "train/loss")
    before = smooth.getData()[0]
    coarse = int(np.count_nonzero((before >= 1000) & (before <= 1400)))
    _redraw(qtbot, panel, lambda: panel.plot_for("lr").setXRange(1000, 1400, padding=0))
    x, _ = smooth.getData()
    assert x[0] >= 999 - 1 and x[-1] <= 1401 + 1  # the range, one point beyond each edge
    assert len(x) <= 2 * panel.pixels() + 4
    assert len(x) > 2 * coarse  # all 400 points now, not the coarse envelope
    _redraw(qtbot, panel, panel.reset_zoom)
    assert smooth.getData()[0][-1] == N - 1


def test_live_points_grow_the_same_curves(qtbot, panel, stored) -> None:
    ms, key = stored
    items = {name: tuple(map(id, panel.items(key, name))) for name in panel.series_names()}
    add_points(ms, key, training_curves(5000, start=N), wall0=WALL0)
    _redraw(qtbot, panel, lambda: panel.notify_data(key))
    for name, ids in items.items():
        assert tuple(map(id, panel.items(key, name))) == ids
        x, _ = panel.items(key, name)[1].getData()
        assert x[-1] == N + 5000 - 1
    assert panel.table.value_at(key, "lr", "Points") == N + 5000
    # Only the new points were read and smoothed: the result equals a fresh full read.
    fresh = SeriesCache(ms)
    fresh.refresh([key])
    for name in panel.series_names():
        (expect,) = fresh.frames([(key, name)], panel.controls.x_mode, panel.controls.smoothing,
                                 {key: WALL0 - 60}, None, panel.pixels())
        got = panel.frame(key, name)
        for field in ("x_raw", "y_raw", "x_smooth"):
            np.testing.assert_array_equal(getattr(got, field), getattr(expect, field))
        # The smoothing carried on from its last state: equal up to float rounding.
        np.testing.assert_allclose(got.y_smooth, expect.y_smooth, rtol=1e-12)


def test_export_png_and_svg(panel, tmp_path: Path) -> None:
    png, svg = tmp_path / "curves.png", tmp_path / "curves.svg"
    panel.export_image(png)
    panel.export_svg(svg)
    image = QImage(str(png))
    assert image.width() > 500 and not is_blank(image)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert len([e for e in root.iter() if e.tag.endswith("path")]) >= 6


@pytest.fixture
def many(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A panel over MANY_RUNS + 1 finished runs of 2000 points each."""
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = open_store(tmp_path)
    runstore, ms = RunStore(store), MetricStore(store)
    keys = []
    for i in range(MANY_RUNS + 1):
        run_id = start_run(runstore, name=f"run{i}")
        runstore.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED)  # frees its GPUs
        keys.append(key_of(runstore, run_id))
        add_points(ms, keys[-1], training_curves(2000, seed=i), wall0=WALL0)
    worker = DataWorker("labdeck-test-data")
    view = CurvePanel(worker, ms)
    qtbot.addWidget(view)
    view.resize(1100, 700)
    view.show()
    yield view, ms, keys
    view.stop()
    worker.stop()
    store.close()


def _count_set_data(view: CurvePanel) -> dict[int, int]:
    calls: dict[int, int] = {}
    for pair in view._items.values():
        for item in pair:
            calls[id(item)] = 0

            def counting(*args, _item=item, _set=item.setData, **kwargs):
                calls[id(_item)] += 1
                return _set(*args, **kwargs)
            item.setData = counting
    return calls


def test_live_update_of_one_run_sets_data_of_that_run_only(qtbot, many) -> None:
    view, ms, keys = many
    live, done = keys[0], keys[1]
    _redraw(qtbot, view, lambda: view.set_runs([(live, "live"), (done, "done")]))
    calls = _count_set_data(view)
    add_points(ms, live, training_curves(300, start=2000), wall0=WALL0)
    _redraw(qtbot, view, lambda: view.notify_data(live))
    for name in view.series_names():
        raw, smooth = view.items(live, name)
        assert calls[id(smooth)] == 1 and calls[id(raw)] == 1  # two runs: raw drawn too
        assert smooth.getData()[0][-1] == 2299 and raw.getData()[0][-1] == 2299
        for item in view.items(done, name):
            assert calls[id(item)] == 0
        assert view.items(done, name)[1].getData()[0][-1] == 1999


def test_many_runs_draw_raw_curves_of_the_hovered_run_only(qtbot, many) -> None:
    view, _ms, keys = many
    _redraw(qtbot, view, lambda: view.set_runs([(k, f"run{i}") for i, k in enumerate(keys)]))
    plot = view.plot_for("train/loss")
    assert plot.getAxis("left").zValue() < plot.getViewBox().zValue()  # grid under curves
    assert not any(view.items(k, "train/loss")[0].isVisible() for k in keys)
    assert not view.items(keys[0], "train/loss")[1].opts["antialias"]
    # Many overlaid smoothed lines: a point every SPARSE_COLUMNS pixels, ends exact.
    frame = view.frame(keys[0], "train/loss")
    assert frame.x_smooth.size <= view.pixels() // SPARSE_COLUMNS + 2
    assert frame.x_raw.size > frame.x_smooth.size  # the raw envelope keeps full detail
    assert (frame.x_smooth[0], frame.x_smooth[-1]) == (0, 1999)
    # The cursor on run 3's smoothed loss curve: its raw curves appear, in every plot.
    frame = view.frame(keys[3], "train/loss")
    i = frame.x_smooth.size // 2
    vb = plot.getViewBox()
    pos = vb.mapViewToScene(QPointF(frame.x_smooth[i], frame.y_smooth[i]))
    view._on_mouse_moved((pos,))
    for name in view.series_names():
        assert [view.items(k, name)[0].isVisible() for k in keys] == [
            k == keys[3] for k in keys]
        raw = view.items(keys[3], name)[0]
        assert raw.getData()[0][-1] == 1999  # given its data when it was shown
    view._set_hovered(None)
    assert not any(view.items(k, "train/loss")[0].isVisible() for k in keys)
