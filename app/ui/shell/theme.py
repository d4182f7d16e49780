"""Light and dark: follow the system (Qt 6.5+ ``QStyleHints.colorScheme()``) or the user's
choice (setting ``theme``: system / light / dark), widgets and pyqtgraph plots alike.

Widgets get an explicit palette (the platform does not always repaint native styles on a
scheme change, and the offscreen platform has no scheme at all); pyqtgraph gets new
defaults for plots made later and a new background/axis colour for the ones that exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QWidget

from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.shell.main_window import MainWindow

SETTING = "theme"
MODES = ("system", "light", "dark")

# Plot colours per theme: background, axis text, axis line.
PLOT_COLORS = {
    "light": ("#ffffff", "#3c4043", "#9aa0a6"),
    "dark": ("#1e1f22", "#dadce0", "#80868b"),
}


def dark_palette() -> QPalette:
    p = QPalette()
    c = QColor
    roles = QPalette.ColorRole
    for role, color in (
        (roles.Window, c("#2b2d30")), (roles.WindowText, c("#e8eaed")),
        (roles.Base, c("#1e1f22")), (roles.AlternateBase, c("#26282b")),
        (roles.ToolTipBase, c("#3c4043")), (roles.ToolTipText, c("#f1f3f4")),
        (roles.PlaceholderText, c("#9aa0a6")), (roles.Text, c("#e8eaed")),
        (roles.Button, c("#35373b")), (roles.ButtonText, c("#e8eaed")),
        (roles.BrightText, c("#ff6e6e")), (roles.Light, c("#4a4d52")),
        (roles.Midlight, c("#3d4044")), (roles.Mid, c("#6b6f75")),
        (roles.Dark, c("#9aa0a6")), (roles.Shadow, c("#000000")),
        (roles.Highlight, c("#3d7bd9")), (roles.HighlightedText, c("#ffffff")),
        (roles.Link, c("#8ab4f8")), (roles.LinkVisited, c("#c58af9")),
    ):
        p.setColor(role, color)
    disabled = QPalette.ColorGroup.Disabled
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        p.setColor(disabled, role, c("#80868b"))
    return p


def system_scheme() -> str:
    """"dark" or "light", as the platform says (light when it does not know)."""
    scheme = QGuiApplication.styleHints().colorScheme()
    return "dark" if scheme == Qt.ColorScheme.Dark else "light"


class ThemeManager(QObject):
    theme_changed = Signal(str)  # the effective theme: "light" or "dark"

    def __init__(self, app: QApplication, save: Callable[[str], None] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._app = app
        self._save = save
        self.mode = "system"
        self.effective = ""
        self.actions: dict[str, QAction] = {}  # View ▸ Theme, set by install_theme
        self.chosen = False  # the user picked a mode in this session
        self.loaded = False  # the stored choice was read (install_theme)
        self.worker: DataWorker | None = None  # reads and saves the choice (install_theme)
        self._light = app.style().standardPalette()
        app.styleHints().colorSchemeChanged.connect(self._on_system_changed)

    def close(self) -> None:
        """Stop the worker that reads and saves the choice (the window's close does too)."""
        if self.worker is not None:
            self.worker.stop()

    def set_mode(self, mode: str, save: bool = True) -> None:
        """Switch to ``mode`` (system/light/dark) now; store it unless ``save`` is False."""
        if mode not in MODES:
            raise ValueError(f"unknown theme {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        if hasattr(self._app.styleHints(), "setColorScheme"):  # Qt 6.8+: native styles too
            self._app.styleHints().setColorScheme(
                {"system": Qt.ColorScheme.Unknown, "light": Qt.ColorScheme.Light,
                 "dark": Qt.ColorScheme.Dark}[mode])
        self.apply()
        if save:
            self.chosen = True
            if self._save is not None:
                self._save(mode)

    def apply(self) -> None:
        effective = system_scheme() if self.mode == "system" else self.mode
        dimmed = self._app.palette().color(QPalette.ColorRole.PlaceholderText)
        self._app.setPalette(dark_palette() if effective == "dark" else self._light)
        restyle_widgets()
        redim_labels(dimmed)
        apply_plot_colors(effective)
        if effective != self.effective:
            self.effective = effective
            self.theme_changed.emit(effective)

    def _on_system_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.mode == "system":
            self.apply()


def shown_widgets() -> Iterator[QWidget]:
    """The widgets of the windows on screen. A closed window may be waiting for its
    deferred deletion, and touching its widgets then can crash; a window shown again
    later takes the theme's colours the next time the theme applies."""
    for top in QApplication.topLevelWidgets():
        if top.isVisible():
            yield top
            yield from top.findChildren(QWidget)


def restyle_widgets() -> None:
    """Style sheets resolve ``palette(role)`` when they are set: set them again."""
    for widget in list(shown_widgets()):
        sheet = widget.styleSheet()
        if sheet:
            widget.setStyleSheet(sheet)


def redim_labels(old: QColor) -> None:
    """Labels given the placeholder colour as their own palette (names of values in the
    GPU tiles) keep it: move them to the new theme's placeholder colour."""
    new = QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
    role = QPalette.ColorRole.WindowText
    for widget in list(shown_widgets()):
        if (isinstance(widget, QLabel) and widget.testAttribute(Qt.WidgetAttribute.WA_SetPalette)
                and widget.palette().color(role) == old):
            pal = widget.palette()
            pal.setColor(role, new)
            widget.setPalette(pal)


def apply_plot_colors(theme: str) -> None:
    """New plots get the theme's colours; existing ones are repainted with them."""
    bg, text, line = PLOT_COLORS[theme]
    pg.setConfigOptions(background=bg, foreground=text)
    for widget in QApplication.allWidgets():
        if isinstance(widget, pg.GraphicsView):
            widget.setBackground(bg)
            for item in widget.items():
                if isinstance(item, pg.AxisItem):
                    item.setTextPen(text)
                    item.setPen(line)


def install_theme(window: MainWindow, ctx: AppContext,
                  worker: DataWorker | None = None) -> ThemeManager:
    """The theme manager with a View ▸ Theme menu; the stored choice is read on a worker."""
    # Imported here: notifications owns the shared View menu helper.
    from app.ui.notify.notifications import view_menu

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    worker = worker or DataWorker("labdeck-theme", window)
    store = ctx.store

    def save(mode: str) -> None:
        worker.submit("save-theme", lambda: store.set_setting(SETTING, mode))

    manager = ThemeManager(app, save, window)
    manager.worker = worker
    menu = view_menu(window).addMenu("Theme")
    group = QActionGroup(menu)
    actions = manager.actions
    for mode in MODES:
        action = menu.addAction(mode.capitalize())
        action.triggered.connect(_chooser(manager, mode))
        action.setCheckable(True)
        group.addAction(action)
        actions[mode] = action
    actions["system"].setChecked(True)

    def loaded(mode: object) -> None:
        manager.loaded = True
        if manager.chosen:  # picked from the menu before the store answered: keep it
            return
        chosen = mode if isinstance(mode, str) and mode in MODES else "system"
        actions[chosen].setChecked(True)
        manager.set_mode(chosen, save=False)

    manager.apply()
    worker.submit("load-theme", lambda: store.get_setting(SETTING, "system"), loaded)
    window.closed.connect(worker.stop)
    return manager


def _chooser(manager: ThemeManager, mode: str) -> Callable[[], None]:
    return lambda: manager.set_mode(mode)
