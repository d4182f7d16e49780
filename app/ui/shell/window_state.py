"""Remembered layout: window geometry, dock/toolbar state, splitter sizes, table headers.

Stored with ``QSettings`` in an INI file under ``LABDECK_HOME`` (private, 0600), never in
the platform registry, so a test or demo home keeps its own layout. ``remember(widget,
key)`` restores what was saved under ``key`` now and saves again whenever it changes
(splitter moved, section resized, window hidden or closed) and when the app quits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication, QHeaderView, QMainWindow, QSplitter, QWidget

from app.core import paths

FILE_NAME = "window-state.ini"
SAVE_DELAY_MS = 500


def settings_path() -> Path:
    return paths.home() / FILE_NAME


def state_settings(path: Path | None = None) -> QSettings:
    path = path or settings_path()
    paths.touch_private(path)
    return QSettings(str(path), QSettings.Format.IniFormat)


def _sync_private(settings: QSettings) -> None:
    settings.sync()
    # QSettings rewrites the file through a temporary one: make sure it stays 0600.
    name = settings.fileName()
    if os.path.exists(name) and os.stat(name).st_mode & 0o077:
        os.chmod(name, 0o600)


class _Keeper(QObject):
    """Saves one widget's state under one key; lives as the widget's child."""

    def __init__(self, widget: QWidget, key: str, path: Path | None) -> None:
        super().__init__(widget)
        self._widget = widget
        self._key = key
        self._path = path
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.save)
        widget.installEventFilter(self)
        if isinstance(widget, QSplitter):
            widget.splitterMoved.connect(self._timer.start)
        if isinstance(widget, QHeaderView):
            widget.sectionResized.connect(self._timer.start)
            widget.sectionMoved.connect(self._timer.start)
            widget.sortIndicatorChanged.connect(self._timer.start)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.save)

    def restore(self) -> bool:
        settings = state_settings(self._path)
        restored = False
        for name, setter in _parts(self._widget):
            value = settings.value(f"{self._key}/{name}")
            if isinstance(value, QByteArray) and not value.isEmpty():
                restored = bool(setter(value)) or restored
        return restored

    def save(self) -> None:
        settings = state_settings(self._path)
        for name, _setter in _parts(self._widget):
            settings.setValue(f"{self._key}/{name}", _getter(self._widget, name)())
        _sync_private(settings)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._widget and event.type() in (QEvent.Type.Close, QEvent.Type.Hide):
            self.save()
        return False


def _parts(widget: QWidget) -> list[tuple[str, Callable[[QByteArray], bool]]]:
    """(name, restore function) of what is kept for this kind of widget."""
    if isinstance(widget, QMainWindow):
        return [("geometry", widget.restoreGeometry), ("state", widget.restoreState)]
    if isinstance(widget, QSplitter | QHeaderView):
        return [("state", widget.restoreState)]
    return [("geometry", widget.restoreGeometry)]


def _getter(widget: QWidget, name: str) -> Callable[[], QByteArray]:
    if name == "geometry":
        return widget.saveGeometry
    saver: Callable[[], QByteArray] = getattr(widget, "saveState")  # noqa: B009
    return saver


def remember(widget: QWidget, key: str, path: Path | None = None) -> bool:
    """Restore ``widget``'s saved layout under ``key`` and keep saving it; True if
    something was restored. Call after the widget's children (docks, columns) exist."""
    keeper = _Keeper(widget, key, path)
    return keeper.restore()


def save_now(widget: QWidget) -> None:
    """Save every remembered state of ``widget`` at once (tests, explicit checkpoints)."""
    for keeper in widget.findChildren(_Keeper):
        keeper.save()
