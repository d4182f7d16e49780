"""DataWorker, the one worker shape: results and errors come back on the GUI thread, never
to an owner deleted meanwhile; an action worker leaves no thread behind; a closing
window's last save still runs."""

from __future__ import annotations

import threading

import pytest
import shiboken6
from PySide6.QtCore import QObject, QThread

from app.ui.common.data_worker import DataWorker

pytestmark = pytest.mark.gui


def test_result_and_error_arrive_on_the_gui_thread(qtbot) -> None:
    worker = DataWorker("labdeck-test-worker")
    got: list[object] = []
    threads: list[QThread] = []

    def fail() -> None:
        raise OSError("disk full")

    def on_result(value: object) -> None:
        got.append(value)
        threads.append(QThread.currentThread())

    worker.submit("a", lambda: 41 + 1, on_result)
    worker.submit("b", fail, None, lambda exc: (got.append(exc), threads.append(
        QThread.currentThread())))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=5000)
    assert got[0] == 42 and isinstance(got[1], OSError)
    assert all(thread is worker.thread() for thread in threads)
    worker.stop()


def test_an_owner_deleted_meanwhile_hears_nothing(qtbot) -> None:
    owner = QObject()
    worker = DataWorker("labdeck-test-action", owner, idle_exit=True)
    release = threading.Event()
    got: list[object] = []
    worker.submit("slow", lambda: release.wait(5), got.append, got.append)
    shiboken6.delete(owner)  # the window closed while the work ran
    release.set()
    qtbot.wait(200)
    assert got == []


def test_an_idle_exit_worker_ends_its_thread_and_starts_again(qtbot) -> None:
    worker = DataWorker("labdeck-test-action", idle_exit=True)
    got: list[object] = []
    worker.submit("one", lambda: threading.current_thread().name, got.append)
    qtbot.waitUntil(lambda: len(got) == 1, timeout=5000)
    qtbot.waitUntil(lambda: not any(t.name == "labdeck-test-action"
                                    for t in threading.enumerate()), timeout=5000)
    worker.submit("two", lambda: 2, got.append)
    qtbot.waitUntil(lambda: len(got) == 2, timeout=5000)
    assert got == ["labdeck-test-action", 2]


def test_stop_can_finish_what_is_queued_without_reporting_back(qtbot) -> None:
    worker = DataWorker("labdeck-test-save", idle_exit=True)
    release = threading.Event()
    saved: list[str] = []
    got: list[object] = []
    worker.submit("first", lambda: release.wait(5), got.append)
    worker.submit("save", lambda: saved.append("layout"), got.append)
    worker.stop(timeout=0, finish_pending=True)
    release.set()
    qtbot.waitUntil(lambda: saved == ["layout"], timeout=5000)
    qtbot.wait(100)
    assert got == []
