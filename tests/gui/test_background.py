"""Background work reports back on the GUI thread, and never to a deleted window."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject
from shiboken6 import delete

from app.ui.background import run_in_background


def test_the_result_reaches_a_live_owner(qtbot) -> None:
    owner = QObject()
    got: list[object] = []
    run_in_background(lambda: 41 + 1, got.append, owner=owner)
    qtbot.waitUntil(lambda: got == [42], timeout=5000)


def test_errors_travel_as_data(qtbot) -> None:
    errors: list[BaseException] = []

    def fail() -> None:
        raise OSError("disk full")

    run_in_background(fail, on_error=errors.append, owner=QObject())
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=5000)
    assert str(errors[0]) == "disk full"


def test_a_deleted_owner_gets_no_callback(qtbot) -> None:
    owner = QObject()
    release = threading.Event()
    got: list[object] = []
    thread = run_in_background(lambda: release.wait(5), got.append, got.append, owner=owner)
    delete(owner)  # the window was closed while the work ran
    release.set()
    thread.join(5)
    qtbot.wait(200)  # the queued delivery runs, and must drop the callback
    assert got == []
