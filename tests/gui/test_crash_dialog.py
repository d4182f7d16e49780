"""An unexpected exception (in a slot, or on a worker thread) shows the crash dialog with a
report that names the error, where it happened and the log file, and copies it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QPushButton

import app
from app.ui.shell.crash_dialog import CrashHandler, install_crash_handler

# pytest-qt turns exceptions in Qt callbacks into test failures through its own
# sys.excepthook; these tests need Labdeck's hook to see them instead.
pytestmark = [pytest.mark.gui, pytest.mark.qt_no_exception_capture]


@pytest.fixture
def handler(qapp: QApplication, tmp_path: Path) -> Iterator[CrashHandler]:
    crash = install_crash_handler(qapp, log_path=tmp_path / "labdeck.log")
    try:
        yield crash
    finally:
        crash.uninstall()
        if crash.dialog is not None:
            crash.dialog.close()
        crash.deleteLater()


def _explode_tile() -> None:
    raise RuntimeError("tile exploded at 97 %")


def _wait_for_dialog(qtbot, crash: CrashHandler) -> str:
    qtbot.waitUntil(lambda: crash.dialog is not None and crash.dialog.isVisible(),
                    timeout=5000)
    assert crash.dialog is not None
    return crash.dialog.report()


def test_exception_in_a_slot_shows_a_copyable_report(qtbot, handler, tmp_path, caplog):
    button = QPushButton("refresh")
    qtbot.addWidget(button)
    button.clicked.connect(_explode_tile)
    with caplog.at_level(logging.ERROR):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        report = _wait_for_dialog(qtbot, handler)
    assert "RuntimeError: tile exploded at 97 %" in report
    assert "in _explode_tile" in report  # the traceback, not only the message
    assert f"Labdeck {app.__version__}" in report
    assert str(tmp_path / "labdeck.log") in report
    assert "Thread MainThread" in report
    # The log got the traceback too, in case the dialog never shows.
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)

    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(handler.dialog.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == report
    assert handler.dialog.copy_button.text() == "Copied"


def test_worker_thread_error_reaches_the_gui_thread_and_appends(qtbot, handler):
    def work() -> None:
        raise ValueError("sample parser choked")

    worker = threading.Thread(target=work, name="labdeck-test-worker")
    worker.start()
    worker.join(5)
    first = _wait_for_dialog(qtbot, handler)
    assert "ValueError: sample parser choked" in first
    assert "Thread labdeck-test-worker" in first
    dialog = handler.dialog

    button = QPushButton("again")
    qtbot.addWidget(button)
    button.clicked.connect(_explode_tile)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "tile exploded" in dialog.report(), timeout=5000)
    # One dialog that collects both reports, not a second window on top.
    assert handler.dialog is dialog
    assert "sample parser choked" in dialog.report()


def test_uninstall_restores_the_previous_hooks(qapp):
    import sys

    before = (sys.excepthook, threading.excepthook)
    crash = install_crash_handler(qapp)
    assert sys.excepthook != before[0]
    crash.uninstall()
    crash.deleteLater()
    assert (sys.excepthook, threading.excepthook) == before
