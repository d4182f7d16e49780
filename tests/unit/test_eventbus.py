"""The Lab's event bus: typed subscriptions, order per publisher, thread safety, a failing
handler that costs the others nothing, unsubscribe."""

from __future__ import annotations

import logging
import threading

import pytest

from app.core.events import (
    Event,
    EventBus,
    HostRemoved,
    PointsStored,
    RunChanged,
)


def test_handlers_get_the_types_they_asked_for_in_publish_order() -> None:
    bus = EventBus()
    runs: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(runs.append, (RunChanged,))
    bus.subscribe(everything.append)
    published = [RunChanged("r1"), HostRemoved("gpu-a"), RunChanged("r2"),
                 PointsStored("k", frozenset({"log"}))]
    for event in published:
        bus.publish(event)
    assert runs == [RunChanged("r1"), RunChanged("r2")]
    assert everything == published


def test_each_publishers_events_arrive_in_its_order_from_many_threads() -> None:
    bus = EventBus()
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def handler(event: Event) -> None:
        assert isinstance(event, RunChanged)
        publisher, number = event.run_id.split(":")
        with lock:
            seen.setdefault(publisher, []).append(int(number))

    bus.subscribe(handler, (RunChanged,))
    start = threading.Barrier(8)

    def publish(name: str) -> None:
        start.wait()
        for number in range(2000):
            bus.publish(RunChanged(f"{name}:{number}"))

    threads = [threading.Thread(target=publish, args=(f"p{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {f"p{i}": list(range(2000)) for i in range(8)}


def test_subscribing_and_unsubscribing_while_others_publish() -> None:
    bus = EventBus()
    stop = threading.Event()
    errors: list[BaseException] = []
    counted: list[int] = []
    bus.subscribe(lambda event: counted.append(1), (RunChanged,))

    def publish() -> None:
        try:
            while not stop.is_set():
                bus.publish(RunChanged("r"))
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    handlers = [lambda event, i=i: None for i in range(200)]
    for handler in handlers:
        bus.subscribe(handler)
    for handler in handlers:
        bus.unsubscribe(handler)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert bus.subscribers() == 1
    assert counted


def test_a_failing_handler_is_logged_and_the_others_still_get_the_event(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    before: list[Event] = []
    after: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a bug in one consumer")

    bus.subscribe(before.append)
    bus.subscribe(broken)
    bus.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="app.core.events"):
        bus.publish(RunChanged("r1"))
        bus.publish(RunChanged("r2"))
    assert before == after == [RunChanged("r1"), RunChanged("r2")]
    assert len([r for r in caplog.records if "RunChanged" in r.getMessage()]) == 2


def test_unsubscribe_stops_delivery_and_subscribing_twice_keeps_one() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, (RunChanged,))
    bus.subscribe(got.append, (RunChanged, HostRemoved))  # same handler: new types, one place
    assert bus.subscribers() == 1
    bus.publish(HostRemoved("gpu-a"))
    bus.unsubscribe(got.append)
    bus.unsubscribe(got.append)  # not subscribed any more: no error
    bus.publish(RunChanged("r1"))
    assert got == [HostRemoved("gpu-a")]
    assert bus.subscribers() == 0


def test_a_handler_may_unsubscribe_itself_while_it_runs() -> None:
    bus = EventBus()
    got: list[Event] = []

    def once(event: Event) -> None:
        got.append(event)
        bus.unsubscribe(once)

    bus.subscribe(once)
    bus.publish(RunChanged("r1"))
    bus.publish(RunChanged("r2"))
    assert got == [RunChanged("r1")]
