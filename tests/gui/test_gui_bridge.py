"""ClusterBridge delivers worker-thread callbacks as signals on the GUI thread."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from app.ui.bridge import ClusterBridge

pytestmark = pytest.mark.gui


def test_signals_arrive_on_gui_thread(qtbot) -> None:
    bridge = ClusterBridge()
    seen: list[tuple[str, str, bool]] = []
    gui = QApplication.instance().thread()
    for kind in ("host_changed", "host_sample", "host_removed"):
        getattr(bridge, kind).connect(
            lambda name, k=kind: seen.append((k, name, QThread.currentThread() is gui)))

    def worker() -> None:
        bridge.on_host_changed("a")
        bridge.on_host_sample("a")
        bridge.on_host_removed("a")

    with qtbot.waitSignal(bridge.host_removed, timeout=3000):
        t = threading.Thread(target=worker, name="fake-worker")
        t.start()
        t.join()
    assert seen == [("host_changed", "a", True), ("host_sample", "a", True),
                    ("host_removed", "a", True)]


def test_samples_are_coalesced_per_host(qtbot) -> None:
    bridge = ClusterBridge()
    got: list[str] = []
    bridge.host_sample.connect(got.append)

    def worker() -> None:
        for _ in range(500):
            bridge.on_host_sample("a")
            bridge.on_host_sample("b")

    t = threading.Thread(target=worker, name="fake-worker")
    t.start()
    t.join()
    qtbot.waitUntil(lambda: "a" in got and "b" in got, timeout=3000)
    # The worker ran while the GUI thread was blocked in join(): one event per host.
    assert sorted(got) == ["a", "b"]
    bridge.on_host_sample("a")  # after delivery, the next sample is delivered again
    qtbot.waitUntil(lambda: got.count("a") == 2, timeout=3000)


def test_detached_bridge_drops_events(qtbot) -> None:
    bridge = ClusterBridge()
    got: list[str] = []
    bridge.host_changed.connect(got.append)
    bridge.detach()
    bridge.on_host_changed("a")
    qtbot.wait(100)
    assert got == []
