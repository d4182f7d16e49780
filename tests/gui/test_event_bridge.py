"""EventBridge: the bus's events arrive as signals on the GUI thread, a burst coalesced to
one delivery per key per frame with the latest event, merged points, removals in order."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread

from app.core.events import (
    EventBus,
    HostChanged,
    HostRemoved,
    HostSample,
    Notification,
    PointsStored,
    RunChanged,
)
from app.core.notify_events import NotifyEvent
from app.ui.common.event_bridge import EventBridge
from ssh_backend.protocol import Sample

pytestmark = pytest.mark.gui


def _sample(number: int) -> Sample:
    return Sample(seq=number, time=float(number), gpus=())


def _publish_from_thread(fn) -> None:
    thread = threading.Thread(target=fn, name="labdeck-test-publisher")
    thread.start()
    thread.join(10)


def test_a_burst_of_samples_is_a_few_deliveries_of_the_latest_on_the_gui_thread(qtbot) -> None:
    bus = EventBus()
    bridge = EventBridge(bus)
    got: list[HostSample] = []
    threads: list[QThread] = []

    def on_sample(event: HostSample) -> None:
        got.append(event)
        threads.append(QThread.currentThread())

    bridge.host_sample.connect(on_sample)

    def burst() -> None:
        for number in range(1000):
            bus.publish(HostSample("gpu-a", _sample(number), float(number)))

    _publish_from_thread(burst)
    qtbot.waitUntil(lambda: bool(got) and got[-1].sample.seq == 999, timeout=5000)
    qtbot.wait(200)  # nothing more comes after the last one
    assert 1 <= len(got) <= 5
    assert got[-1] == HostSample("gpu-a", _sample(999), 999.0)
    assert all(thread is bridge.thread() for thread in threads)
    bridge.detach()


def test_keys_are_kept_apart_and_points_of_one_run_are_merged(qtbot) -> None:
    bus = EventBus()
    bridge = EventBridge(bus)
    samples: list[str] = []
    stored: list[PointsStored] = []
    runs: list[str] = []
    bridge.host_sample.connect(lambda event: samples.append(event.host))
    bridge.points_stored.connect(stored.append)
    bridge.run_changed.connect(lambda event: runs.append(event.run_id))

    def burst() -> None:
        for number in range(100):
            bus.publish(HostSample("gpu-a", _sample(number), 0.0))
            bus.publish(HostSample("gpu-b", _sample(number), 0.0))
        bus.publish(PointsStored("k1", frozenset({"log"})))
        bus.publish(PointsStored("k1", frozenset({"metrics"}), frozenset({"loss"})))
        bus.publish(PointsStored("k1", frozenset({"metrics"}), frozenset({"acc"})))
        bus.publish(RunChanged("r1"))

    with qtbot.waitSignal(bridge.run_changed, timeout=5000):
        _publish_from_thread(burst)
    qtbot.wait(150)
    assert set(samples) == {"gpu-a", "gpu-b"} and len(samples) <= 6
    merged = [event for event in stored if event.series]
    assert merged and merged[-1].kinds >= {"metrics"}
    union = frozenset().union(*(event.kinds for event in stored))
    assert union == {"log", "metrics"}
    assert frozenset().union(*(event.series for event in stored)) == {"loss", "acc"}
    assert runs == ["r1"]
    bridge.detach()


def test_a_host_removed_and_added_again_ends_up_there(qtbot) -> None:
    bus = EventBus()
    bridge = EventBridge(bus)
    order: list[str] = []
    bridge.host_changed.connect(lambda event: order.append(f"changed {event.host}"))
    bridge.host_sample.connect(lambda event: order.append(f"sample {event.host}"))
    bridge.host_removed.connect(lambda event: order.append(f"removed {event.host}"))
    view = object()  # the bridge never looks inside an event's data

    def burst() -> None:
        bus.publish(HostChanged("gpu-a", view))  # type: ignore[arg-type]
        bus.publish(HostSample("gpu-a", _sample(1), 0.0))
        bus.publish(HostRemoved("gpu-a"))
        bus.publish(HostChanged("gpu-a", view))  # type: ignore[arg-type]

    # Published before the GUI thread looks: one batch, whatever the machine's speed.
    _publish_from_thread(burst)
    qtbot.waitUntil(lambda: "changed gpu-a" in order, timeout=5000)
    assert order == ["removed gpu-a", "changed gpu-a"]
    bridge.detach()


def test_notifications_are_each_delivered(qtbot) -> None:
    bus = EventBus()
    bridge = EventBridge(bus, types=(Notification,))
    got: list[str] = []
    bridge.notification.connect(lambda event: got.append(event.event.title))
    bridge.run_changed.connect(lambda event: got.append("not asked for"))

    def burst() -> None:
        for title in ("one", "two", "three"):
            bus.publish(Notification(NotifyEvent("succeeded", title, "")))
            bus.publish(RunChanged("r1"))

    _publish_from_thread(burst)
    qtbot.waitUntil(lambda: len(got) == 3, timeout=5000)
    qtbot.wait(100)
    assert got == ["one", "two", "three"]
    bridge.detach()


def test_after_detach_nothing_is_delivered_and_the_bus_is_let_go(qtbot) -> None:
    bus = EventBus()
    bridge = EventBridge(bus)
    got: list[object] = []
    bridge.run_changed.connect(got.append)
    bus.publish(RunChanged("r1"))  # waiting in the queue when the window closes
    bridge.detach()
    bus.publish(RunChanged("r2"))
    qtbot.wait(150)
    assert got == []
    assert bus.subscribers() == 0
