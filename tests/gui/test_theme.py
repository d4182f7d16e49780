"""Light/dark: switching changes the palette, pyqtgraph plots (new and existing) and is
stored; the notification screenshots render, and dark differs from light."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication

from app.ui.shell.selfcheck import is_blank
from app.ui.shell.theme import PLOT_COLORS, ThemeManager, install_theme
from tests.harness.notify_fixtures import make_world

pytestmark = pytest.mark.gui


@pytest.fixture
def world(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    w = make_world(tmp_path)
    qtbot.addWidget(w.window)
    yield w
    w.window.closed.emit()  # stops the theme's worker
    w.monitor.stop()
    w.store.close()


@pytest.fixture
def restore_light():
    """Leave the process as it was: later tests must not inherit a theme."""
    app = QApplication.instance()
    palette = QPalette(app.palette())
    plot_defaults = {k: pg.getConfigOption(k) for k in ("background", "foreground")}
    yield
    app.setPalette(palette)
    pg.setConfigOptions(**plot_defaults)


def _window_color() -> QColor:
    return QApplication.palette().color(QPalette.ColorRole.Window)


def test_switching_to_dark_changes_palette_and_plots(qtbot, world, restore_light) -> None:
    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    plot.setBackground("w")
    manager = install_theme(world.window, world.ctx)
    qtbot.waitUntil(lambda: manager.loaded, timeout=5000)
    light_window = _window_color()
    assert light_window.lightness() > 128

    with qtbot.waitSignal(manager.theme_changed, timeout=2000) as blocker:
        manager.actions["dark"].trigger()
    assert blocker.args == ["dark"] and manager.effective == "dark"
    assert _window_color().lightness() < 80
    # Widgets hear of the new application palette through a posted event.
    qtbot.waitUntil(lambda: world.window.palette().color(QPalette.ColorRole.Base)
                    .lightness() < 80, timeout=2000)
    # The existing plot and the defaults for new ones follow.
    assert plot.backgroundBrush().color() == QColor(PLOT_COLORS["dark"][0])
    assert pg.getConfigOption("background") == PLOT_COLORS["dark"][0]
    axis = plot.getPlotItem().getAxis("left")
    assert axis.textPen().color() == QColor(PLOT_COLORS["dark"][1])
    qtbot.waitUntil(lambda: world.store.get_setting("theme") == "dark", timeout=5000)

    with qtbot.waitSignal(manager.theme_changed, timeout=2000):
        manager.set_mode("light")
    assert _window_color() == light_window
    assert plot.backgroundBrush().color() == QColor(PLOT_COLORS["light"][0])
    with pytest.raises(ValueError, match="unknown theme"):
        manager.set_mode("sepia")


def test_stored_choice_is_applied_at_install(qtbot, world, restore_light) -> None:
    world.store.set_setting("theme", "dark")
    manager = install_theme(world.window, world.ctx)
    qtbot.waitUntil(lambda: manager.effective == "dark", timeout=5000)
    assert manager.mode == "dark" and manager.actions["dark"].isChecked()


def test_system_mode_follows_the_platform_scheme(qtbot, restore_light) -> None:
    manager = ThemeManager(QApplication.instance())
    manager.set_mode("system", save=False)
    # Offscreen the platform reports no scheme: that reads as light.
    assert manager.effective == "light"


def test_notification_screenshots_render_light_and_dark(qtbot, tmp_path: Path,
                                                        restore_light) -> None:
    from make_notification_screenshots import render

    paths = render(tmp_path)
    images = {p.name: QImage(str(p)) for p in paths}
    assert set(images) == {"notifications-light.png", "notifications-dark.png"}
    for image in images.values():
        assert (image.width(), image.height()) == (1280, 800)
        assert not is_blank(image)
    light, dark = images["notifications-light.png"], images["notifications-dark.png"]
    # The menu bar's background: light is light, dark is dark.
    assert light.pixelColor(600, 5).lightness() > 180
    assert dark.pixelColor(600, 5).lightness() < 80


def test_a_choice_made_before_the_store_answers_is_kept(qtbot, world, restore_light) -> None:
    world.store.set_setting("theme", "light")
    manager = install_theme(world.window, world.ctx)
    manager.actions["dark"].trigger()
    qtbot.waitUntil(lambda: manager.loaded, timeout=5000)
    assert manager.effective == "dark"
    qtbot.waitUntil(lambda: world.store.get_setting("theme") == "dark", timeout=5000)
