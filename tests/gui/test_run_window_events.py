"""The run window follows its run's RunChanged events at once, and reads the store for
nothing else: the header changes within a frame of the event, never on a timer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import shiboken6

from app.core.events import EventBus, RunChanged
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import RunContext
from app.ui.run_window.window import RunWindow, open_run_window
from tests.harness.run_fixtures import open_store, start_run

pytestmark = pytest.mark.gui

# Longer than the 2 s poll the window once had: a change must wait for its event.
NO_POLL_S = 2.5


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = open_store(tmp_path)
    runstore = RunStore(store)
    run_id = start_run(runstore, name="vit-small", started_at=time.time() - 90)
    bus = EventBus()
    window = open_run_window(run_id, RunContext(runstore, MetricStore(store), None, bus))
    yield window, runstore, run_id, bus
    if shiboken6.isValid(window):  # deleted on close
        window.close()
    store.close()


def _publish(bus: EventBus, event: RunChanged) -> None:
    # From a thread of its own, as the dispatcher publishes.
    thread = threading.Thread(target=bus.publish, args=(event,), name="labdeck-test-dispatch")
    thread.start()
    thread.join(5)


def _shown(qtbot, window: RunWindow) -> None:
    qtbot.waitUntil(lambda: window.state_chip.text() == "running", timeout=10_000)


def test_the_header_follows_a_run_changed_event_not_a_timer(qtbot, world) -> None:
    window, runstore, run_id, bus = world
    _shown(qtbot, window)
    assert runstore.transition(run_id, RunState.RUNNING, RunState.FAILED, exit_code=2,
                               reason="exited with code 2", ended_at=time.time())
    qtbot.wait(int(NO_POLL_S * 1000))
    assert window.state_chip.text() == "running"  # nobody said so yet: no poll re-read it

    _publish(bus, RunChanged("some-other-run"))
    qtbot.wait(300)
    assert window.state_chip.text() == "running"  # not about this run

    sent = time.monotonic()
    _publish(bus, RunChanged(run_id))
    qtbot.waitUntil(lambda: window.state_chip.text() == "failed", timeout=1000)
    assert time.monotonic() - sent < 1.0
    assert window.exit_label.text() == "exit code 2 · exited with code 2"


def test_the_end_of_a_run_shows_at_once(qtbot, world) -> None:
    window, runstore, run_id, bus = world
    _shown(qtbot, window)
    run = runstore.get(run_id)
    assert run is not None and run.started_at is not None
    assert runstore.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED, exit_code=0,
                               ended_at=run.started_at + 75)
    with qtbot.waitSignal(window.run_changed, timeout=1000):
        _publish(bus, RunChanged(run_id))
    assert window.state_chip.text() == "succeeded"
    assert window.windowTitle() == "vit-small — succeeded"
    assert window.time_label.text().endswith("ran 1m 15s")


def test_closing_the_window_lets_go_of_the_bus(qtbot, world) -> None:
    window, _runstore, run_id, bus = world
    _shown(qtbot, window)
    assert bus.subscribers() == 1
    window.close()
    assert bus.subscribers() == 0
    _publish(bus, RunChanged(run_id))  # nobody listening: nothing happens
    qtbot.wait(100)
