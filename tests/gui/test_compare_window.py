"""The compare window over a real store, a real Ingestor and real widgets: differing
parameters, one distinct curve per run in every plot, legend toggles, summary and CSV,
runs added by drop and removed, live updates, remembered layouts, dark palette."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import shiboken6
from make_compare_screenshots import dark_palette
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.core.hosts.cluster import ClusterMonitor
from app.core.lab import Lab
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import AppContext
from app.ui.compare.colors import LIGHT, contrast, run_color
from app.ui.compare.data import LAYOUT_SETTING, signature
from app.ui.compare.window import RUN_IDS_MIME, CompareWindow, open_compare_window
from app.ui.curves.curve_data import XMode
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.gui_fakes import FakeLab, spec
from tests.harness.run_fixtures import (
    HOST,
    METRICS,
    add_points,
    key_of,
    open_store,
    start_run,
    training_curves,
)

pytestmark = pytest.mark.gui
N = 600
SERIES = ("train/loss", "val/acc", "lr")
PARAMS = ({"lr": 1e-3, "batch": 64, "seed": 0}, {"lr": 3e-4, "batch": 64, "seed": 1},
          {"lr": 1e-4, "batch": 64, "seed": 2})


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = open_store(tmp_path)
    runstore, ms = RunStore(store), MetricStore(store)
    ids = []
    for i, params in enumerate(PARAMS):
        run_id = start_run(runstore, name=f"resnet-lr{params['lr']:g}", params=params,
                           gpus=(i,))
        add_points(ms, key_of(runstore, run_id), training_curves(N, seed=i))
        ids.append(run_id)
    fake = FakeLab()
    monitor = ClusterMonitor(fake)
    monitor.add_host(spec(HOST))
    services = Lab(store, monitor)
    services.ingestor.start()
    ctx = AppContext(store, runstore, ms, services)
    yield SimpleNamespace(store=store, runstore=runstore, ms=ms, ids=ids, fake=fake, ctx=ctx)
    services.ingestor.stop()
    monitor.stop()
    store.close()


def _open(qtbot, lab, ids=None) -> CompareWindow:
    win = open_compare_window(list(ids or lab.ids), lab.ctx)
    win.resize(1280, 800)
    _settle(qtbot, win)
    return win


def _settle(qtbot, win: CompareWindow) -> None:
    def ready() -> bool:
        keys = win.curves.run_keys()
        shown = len(win.run_ids()) - len(win.missing_run_ids())
        return (win.reads > 0 and len(keys) == shown and win.curves.settled()
                and not win.worker.is_busy()
                and all(win.curves.frame(k, s) is not None for k in keys
                        for s in win.curves.shown_plots()))
    qtbot.waitUntil(ready, timeout=15_000)


@pytest.fixture
def window(qtbot, lab):
    win = _open(qtbot, lab)
    yield win
    if shiboken6.isValid(win):
        win.close()


def _keys(lab, ids=None) -> list[str]:
    return [key_of(lab.runstore, i) for i in (ids or lab.ids)]


def _lab_color(c: QColor) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour, to measure how far apart two colours look."""
    rgb = np.array([c.redF(), c.greenF(), c.blueF()])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a: QColor, b: QColor) -> float:
    return float(np.linalg.norm(_lab_color(a) - _lab_color(b)))


def _assert_distinct(colors: list[QColor], background: QColor, min_delta: float) -> None:
    for c in colors:
        assert contrast(c, background) >= 3.0, (c.name(), background.name())
    for a, b in itertools.combinations(colors, 2):
        assert _delta_e(a, b) >= min_delta, (a.name(), b.name())


def test_parameter_table_lists_only_what_differs(qtbot, window, lab) -> None:
    params = window.params
    assert params.param_names() == ["lr", "seed"]
    assert params.run_ids() == lab.ids
    assert [params.value("lr", i) for i in lab.ids] == ["0.001", "0.0003", "0.0001"]
    assert "2 of 3 parameters differ" in window.ui.params_summary.text()
    qtbot.mouseClick(window.show_all, Qt.MouseButton.LeftButton)
    assert params.param_names() == ["batch", "lr", "seed"]
    assert [params.value("batch", i) for i in lab.ids] == ["64"] * 3
    qtbot.mouseClick(window.show_all, Qt.MouseButton.LeftButton)
    assert params.param_names() == ["lr", "seed"]


def test_every_plot_has_one_distinct_curve_per_run(window, lab) -> None:
    panel = window.curves
    keys = _keys(lab)
    assert sorted(panel.shown_plots()) == sorted(SERIES)
    per_run: dict[str, QColor] = {}
    for series in SERIES:
        plot = panel.plot_for(series)
        assert plot is not None and plot.isVisible()
        colors = []
        for key in keys:
            raw, smooth = panel.items(key, series)
            assert smooth in plot.listDataItems() and raw in plot.listDataItems()
            assert panel.frame(key, series).count == N
            color = panel.pen_color(key, series)
            colors.append(color)
            # A run has one colour in every plot (and in the legend).
            assert per_run.setdefault(key, color) == color
        # Three curves per plot (each with its faint raw twin), no more.
        assert len(plot.listDataItems()) == 2 * len(keys)
        _assert_distinct(colors, panel.background(), min_delta=20)
    for run_id, key in zip(lab.ids, keys, strict=True):
        item = window.legend.item_for(run_id)
        icon = item.icon().pixmap(22, 14).toImage()
        assert icon.pixelColor(11, 7).name() == per_run[key].name()


def test_palette_stays_distinct_past_ten_runs_on_light_and_dark() -> None:
    for background in (LIGHT.background, dark_palette().base().color()):
        _assert_distinct([run_color(i, background) for i in range(10)], background, 12)
        _assert_distinct([run_color(i, background) for i in range(20)], background, 5)


def test_dark_palette_restyles_plots(qtbot, window, lab) -> None:
    window.setPalette(dark_palette())
    panel = window.curves
    qtbot.waitUntil(lambda: panel.theme.dark, timeout=5000)
    background = panel.background()
    assert background == dark_palette().base().color()
    for series in SERIES:
        _assert_distinct([panel.pen_color(k, series) for k in _keys(lab)], background, 20)
        title = panel.plot_for(series).titleLabel.opts["color"]
        assert contrast(QColor(title), background) >= 7


def test_legend_click_hides_the_run_in_every_plot(qtbot, window, lab) -> None:
    legend, panel = window.legend, window.curves
    keys = _keys(lab)
    item = legend.item_for(lab.ids[1])
    rect = legend.visualItemRect(item)
    qtbot.mouseClick(legend.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert not legend.is_visible(lab.ids[1])

    def hidden_everywhere() -> bool:
        return all(not panel.curve_visible(keys[1], s) and not panel.items(keys[1], s)[0]
                   .isVisible() for s in SERIES)
    assert hidden_everywhere()
    assert all(panel.curve_visible(k, s) for k in (keys[0], keys[2]) for s in SERIES)
    # A redraw (new smoothing) must not bring its curves back.
    drawn = panel.frames_applied
    panel.controls.set_smoothing(0.3)
    qtbot.waitUntil(lambda: panel.frames_applied > drawn and panel.settled(), timeout=10_000)
    assert hidden_everywhere()
    # Clicking an in-plot legend entry shows it again, in every plot and in the side list.
    plot = panel.plot_for("val/acc")
    panel.controls.legend_check.setChecked(True)
    sample = next(s for s, _label in plot.legend.items if s.item is panel.items(keys[1],
                                                                                 "val/acc")[1])
    sample.item.setVisible(True)  # what pyqtgraph's sample does on click, then it signals
    sample.sigClicked.emit(sample.item)
    assert all(panel.curve_visible(keys[1], s) for s in SERIES)
    assert legend.is_visible(lab.ids[1])


def test_summary_equals_the_metric_store_and_exports(qtbot, window, lab, tmp_path) -> None:
    stats = window.stats
    assert len(stats.rows) == len(SERIES) * len(lab.ids)
    expected = {}
    for run_id, key in zip(lab.ids, _keys(lab), strict=True):
        for info in lab.ms.series(key):
            expected[(info.name, run_id)] = info
            assert stats.value_at(run_id, info.name, "Last") == info.last_value
            assert stats.value_at(run_id, info.name, "Min") == info.min_value
            assert stats.value_at(run_id, info.name, "Max") == info.max_value
            assert stats.value_at(run_id, info.name, "Points") == N
    out = tmp_path / "summary.csv"
    with qtbot.waitCallback(timeout=10_000) as done:
        window.export("csv", out, done)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(expected)
    for row in rows:
        info = expected[(row["metric"], row["run_id"])]
        assert float(row["last"]) == info.last_value
        assert float(row["min"]) == info.min_value
        assert float(row["max"]) == info.max_value
        assert int(row["points"]) == info.count
        assert int(row["last_step"]) == info.last_step


def _drop(target, mime: QMimeData) -> tuple[bool, bool]:
    pos = QPointF(target.width() / 2, target.height() / 2)
    actions = Qt.DropAction.CopyAction | Qt.DropAction.MoveAction
    enter = QDragEnterEvent(pos.toPoint(), actions, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    drop = QDropEvent(pos, actions, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_runs_added_by_drop_and_removed(qtbot, window, lab) -> None:
    panel = window.curves
    before = {k: panel.run_color(k) for k in _keys(lab)}
    new_id = start_run(lab.runstore, name="vit-lr3e-4",
                       params={"lr": 3e-4, "batch": 128, "seed": 0}, gpus=(5,))
    add_points(lab.ms, key_of(lab.runstore, new_id), training_curves(N, seed=9))

    refused = QMimeData()
    refused.setText(new_id)
    assert _drop(window, refused) == (False, False)
    mime = QMimeData()  # kept referenced until the drop is handled
    mime.setData(RUN_IDS_MIME, json.dumps([new_id, lab.ids[0]]).encode())
    assert _drop(window.legend.viewport(), mime) == (True, True)
    ids = [*lab.ids, new_id]
    _settle(qtbot, window)
    assert window.run_ids() == ids
    assert len(panel.run_keys()) == 4
    assert window.params.param_names() == ["batch", "lr", "seed"]
    assert {k: panel.run_color(k) for k in _keys(lab)} == before  # colours stay with runs
    _assert_distinct([panel.pen_color(k, "train/loss") for k in _keys(lab, ids)],
                     panel.background(), 20)

    gone = key_of(lab.runstore, lab.ids[1])
    window.remove_runs([lab.ids[1]])
    _settle(qtbot, window)
    assert lab.ids[1] not in window.run_ids() and gone not in panel.run_keys()
    for series in SERIES:
        assert panel.items(gone, series) is None
        assert len(panel.plot_for(series).listDataItems()) == 2 * 3
    assert lab.ids[1] not in window.params.run_ids()
    assert all(r.run_id != lab.ids[1] for r in window.stats.rows)
    assert window.legend.run_ids() == [lab.ids[0], lab.ids[2], new_id]

    # The legend's context action removes too.
    menu = window.legend.context_menu(new_id, [new_id])
    remove = next(a for a in menu.actions() if a.text().startswith("Remove"))
    remove.trigger()
    _settle(qtbot, window)
    assert window.run_ids() == [lab.ids[0], lab.ids[2]]
    assert window.legend.run_ids() == [lab.ids[0], lab.ids[2]]
    assert window.params.param_names() == ["lr", "seed"]
    # And the parameter table's, on a run's row.
    menu = window.params.context_menu(window.params.run_ids().index(lab.ids[2]))
    next(a for a in menu.actions() if a.text().startswith("Remove")).trigger()
    _settle(qtbot, window)
    assert window.run_ids() == [lab.ids[0]]
    assert window.params.param_names() == ["batch", "lr", "seed"]  # one run: all listed


def test_live_points_extend_the_curves(qtbot, window, lab) -> None:
    panel = window.curves
    key = _keys(lab)[2]
    # The plot that follows the data moves on when the first plot is not shown.
    window.metrics.set_checked("train/loss", False)
    assert "train/loss" not in panel.shown_plots()
    extra = 100
    steps = np.arange(N, N + extra)
    points = tuple(MetricPoint(name, int(s), 1.7e9 + s * 0.5, float(v))
                   for name in SERIES for s, v in zip(steps, np.linspace(1, 0, extra),
                                                      strict=True))
    start = lab.ms.offsets(key)[METRICS]
    lab.fake.sessions[HOST].report_tail(TailChunk(key, METRICS, 1, start, start + 4000,
                                                  points=points))
    qtbot.waitUntil(lambda: all(panel.frame(key, s).count == N + extra for s in SERIES)
                    and panel.settled(), timeout=10_000)
    run_id = lab.ids[2]
    qtbot.waitUntil(lambda: window.stats.value_at(run_id, "val/acc", "Points") == N + extra,
                    timeout=10_000)
    assert window.stats.value_at(run_id, "lr", "Last step") == N + extra - 1
    _lo, hi = panel.plot_for("val/acc").getViewBox().viewRange()[0]
    assert hi >= N + extra - 1


def test_layout_is_remembered_per_set_of_metrics(qtbot, window, lab) -> None:
    controls = window.curves.controls
    with qtbot.waitSignal(window.layout_saved, timeout=10_000):
        window.metrics.set_checked("lr", False)
        controls.set_x_mode(XMode.RELATIVE)
        controls.set_smoothing(0.3)
    assert window.curves.shown_plots() == ["train/loss", "val/acc"]
    saved = lab.store.get_setting(LAYOUT_SETTING)[signature(SERIES)]
    assert saved["metrics"] == ["train/loss", "val/acc"]
    assert (saved["x_mode"], saved["smoothing"]) == ("relative", 0.3)
    window.close()

    again = _open(qtbot, lab)
    try:
        assert again.metrics.chosen() == ["train/loss", "val/acc"]
        assert again.curves.shown_plots() == ["train/loss", "val/acc"]
        assert again.curves.controls.x_mode is XMode.RELATIVE
        assert again.curves.controls.smoothing == pytest.approx(0.3)
    finally:
        again.close()

    # Runs with other metrics start from the defaults.
    other = start_run(lab.runstore, name="other", params={"lr": 1.0}, gpus=(6,))
    add_points(lab.ms, key_of(lab.runstore, other),
               {"loss": (np.arange(50), np.linspace(2, 1, 50))})
    fresh = _open(qtbot, lab, [other])
    try:
        assert fresh.curves.controls.x_mode is XMode.STEP
        assert fresh.curves.shown_plots() == ["loss"]
    finally:
        fresh.close()


def test_deleted_runs_are_left_out_with_a_reason(qtbot, lab) -> None:
    assert lab.runstore.transition(lab.ids[2], RunState.RUNNING, RunState.SUCCEEDED,
                                   ended_at=1.7e9, exit_code=0)
    lab.runstore.delete(lab.ids[2])
    win = _open(qtbot, lab, lab.ids)
    try:
        assert win.missing_run_ids() == [lab.ids[2]]
        assert "no longer in the store" in win.ui.status.text()
        assert len(win.curves.run_keys()) == 2
        assert win.legend.run_ids() == lab.ids[:2]
    finally:
        win.close()
