"""Turns an unexpected exception into a dialog with a copyable report instead of a silent
failure: ``install_crash_handler(app)`` hooks ``sys.excepthook`` (exceptions in slots and
on the GUI thread) and ``threading.excepthook`` (worker threads, shown on the GUI thread).

Every exception is logged with its traceback first, so the log has it even if the dialog
cannot be shown. Expected failures (auth, unreachable host) never come here: they are
reported where they happen.
"""

from __future__ import annotations

import logging
import logging.handlers
import platform
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import PySide6
import shiboken6
from PySide6.QtCore import QObject, Qt, Signal, Slot, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import app
from app.ui.common.plain_text import PlainLabel

log = logging.getLogger(__name__)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def current_log_path() -> Path | None:
    """The file the root logger writes to (set up by the CLI), if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def format_report(exc_info: ExcInfo, thread_name: str, log_path: Path | None) -> str:
    """Plain text to paste into a bug report: versions, platform, where, traceback."""
    exc_type, exc, tb = exc_info
    lines = [
        f"Labdeck {app.__version__} crash report",
        f"Python {platform.python_version()} ({sys.executable}"
        + (", frozen" if getattr(sys, "frozen", False) else "") + ")",
        f"Qt {qVersion()}, PySide6 {PySide6.__version__}",
        f"Platform {platform.platform()}",
        f"Thread {thread_name}",
        f"Log file {log_path if log_path else '(none)'}",
        "",
        "".join(traceback.format_exception(exc_type, exc, tb)).rstrip(),
    ]
    return "\n".join(lines) + "\n"


class CrashDialog(QDialog):
    """Shows one or more crash reports, with a button that copies them all."""

    def __init__(self, report: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("crash_dialog")
        self.setWindowTitle("Labdeck: unexpected error")
        self.resize(720, 480)
        intro = PlainLabel(
            "Labdeck ran into an error it did not expect. It keeps running, but what you "
            "were doing may not have finished. Please copy this report into a bug report; "
            "the log file named in it has more detail."
        )
        intro.setWordWrap(True)
        self.report_view = QPlainTextEdit(report)
        self.report_view.setObjectName("crash_report")
        self.report_view.setReadOnly(True)
        self.report_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy report")
        self.copy_button.setObjectName("crash_copy")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self._on_copy_clicked)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.report_view, 1)
        layout.addWidget(buttons)

    def report(self) -> str:
        return self.report_view.toPlainText()

    def add_report(self, report: str) -> None:
        """A further error while this dialog is open: appended, not another window."""
        self.report_view.appendPlainText("\n" + "-" * 60 + "\n" + report)

    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.report())
        self.copy_button.setText("Copied")


class CrashHandler(QObject):
    """Owns the hooks; reports reach the GUI thread through a queued signal."""

    report_ready = Signal(str)

    def __init__(self, log_path: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.log_path = log_path
        self.dialog: CrashDialog | None = None
        self._old_excepthook: ExceptHook = sys.excepthook
        self._old_threading_hook = threading.excepthook
        # Queued even when emitted on the GUI thread: the dialog is built after the
        # failing slot has unwound, never inside it.
        self.report_ready.connect(self._on_report_ready, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        sys.excepthook = self._excepthook
        threading.excepthook = self._threading_excepthook

    def uninstall(self) -> None:
        sys.excepthook = self._old_excepthook
        threading.excepthook = self._old_threading_hook

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException,
                    tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            self._old_excepthook(exc_type, exc, tb)
            return
        self._handle((exc_type, exc, tb), threading.current_thread().name)

    def _threading_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "unknown thread"
        self._handle((args.exc_type, args.exc_value, args.exc_traceback), name)

    def _handle(self, exc_info: ExcInfo, thread_name: str) -> None:
        try:
            log.error("unexpected error in %s", thread_name, exc_info=exc_info)
            self.report_ready.emit(format_report(exc_info, thread_name, self.log_path))
        except Exception:
            # The handler itself failed (interpreter shutting down, Qt gone): at least
            # the default hook prints the original error.
            sys.__excepthook__(*exc_info)

    @Slot(str)
    def _on_report_ready(self, report: str) -> None:
        # A closed dialog deletes itself; its wrapper then answers isValid() False.
        if self.dialog is not None and shiboken6.isValid(self.dialog) and self.dialog.isVisible():
            self.dialog.add_report(report)
        else:
            parent = QApplication.activeWindow()
            self.dialog = CrashDialog(report, parent)
            self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()


def install_crash_handler(application: QApplication,
                          log_path: Path | None = None) -> CrashHandler:
    """Hook unexpected exceptions to the crash dialog; returns the handler (``uninstall()``
    restores the previous hooks). ``log_path`` defaults to the root logger's file."""
    handler = CrashHandler(log_path if log_path is not None else current_log_path(),
                           parent=application)
    handler.install()
    return handler
