"""Creates the one QApplication with Labdeck's identity (name, desktop file, icon)."""

from __future__ import annotations

import logging
import os
import sys

from PySide6.QtCore import QMessageLogContext, Qt, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from app.ui.common.resources import app_icon

APP_NAME = "Labdeck"
DESKTOP_FILE = "org.labdeck.Labdeck"

_qt_log = logging.getLogger("qt")
_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def _qt_message_to_log(kind: QtMsgType, context: QMessageLogContext, message: str) -> None:
    """Qt's own warnings (missing plugins, fonts, painter misuse) go to Labdeck's log file."""
    category = context.category or "qt"
    _qt_log.log(_QT_LEVELS.get(kind, logging.WARNING), "[%s] %s", category, message)


def capture_qt_messages() -> None:
    """Route Qt's messages into logging (idempotent)."""
    qInstallMessageHandler(_qt_message_to_log)


def use_offscreen_if_headless() -> None:
    """Pick the offscreen platform when there is no display and nobody chose one."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (the existing one if already created), named and with its icon."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
        # Only for the application this creates: an existing one (a test's) keeps the
        # message handler its owner installed.
        capture_qt_messages()
        # Fractional scale factors (150 %) render crisply instead of rounding up to 2x.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication(list(argv) if argv else [sys.argv[0] if sys.argv else APP_NAME])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName("Labdeck")
    app.setOrganizationDomain("labdeck.org")
    QGuiApplication.setDesktopFileName(DESKTOP_FILE)
    app.setWindowIcon(app_icon())
    return app
