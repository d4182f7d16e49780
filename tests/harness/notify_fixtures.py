"""A main window over a real store and fake hosts, with a dispatcher stand-in that
publishes run changes on its own thread (as the real one does), and fake channels."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.core.events import EventBus, RunChanged
from app.core.hosts.cluster import ClusterMonitor
from app.core.lab import Lab
from app.core.metrics.metricstore import MetricStore
from app.core.notify_events import NotifyEvent
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.shell.main_window import MainWindow
from tests.harness.gui_fakes import FakeLab, bring_online, idle_reading, spec
from tests.harness.run_fixtures import add_points, key_of, start_run, training_curves


class ThreadDispatcher:
    """The methods of ``Dispatcher`` the notifier and tray use; ``fire`` publishes on
    the bus from a separate thread, several times, like a burst of state changes."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        # What the real one keeps from its last step: the lab's reserved GPUs.
        self.reserved: dict[tuple[str, int], str] = {}

    def reserved_now(self) -> dict[tuple[str, int], str]:
        return dict(self.reserved)

    def fire(self, run_id: str, times: int = 1) -> None:
        def work() -> None:
            for _ in range(times):
                self.bus.publish(RunChanged(run_id))

        thread = threading.Thread(target=work, name="labdeck-test-dispatcher")
        thread.start()
        thread.join(5)


class FakeChannel:
    def __init__(self, name: str, log: list[str], available: bool = True,
                 ok: bool = True) -> None:
        self.name = name
        self.log = log
        self._available = available
        self._ok = ok
        self.shown: list[NotifyEvent] = []

    def available(self) -> bool:
        self.log.append(f"{self.name}?")
        return self._available

    def show(self, event: NotifyEvent, done) -> None:
        self.log.append(f"{self.name}!")
        if self._ok:
            self.shown.append(event)
        done(self._ok)

    def close(self) -> None:
        pass


@dataclass
class World:
    store: Store
    runstore: RunStore
    metricstore: MetricStore
    lab: FakeLab
    monitor: ClusterMonitor
    dispatcher: ThreadDispatcher
    window: MainWindow
    ctx: AppContext
    run_id: str

    def finish(self, state: RunState = RunState.SUCCEEDED, **fields) -> None:
        run = self.runstore.get(self.run_id)
        assert run is not None and run.started_at is not None
        assert self.runstore.transition(self.run_id, RunState.RUNNING, state,
                                        ended_at=run.started_at + 5025.0, **fields)


def make_world(home: Path) -> World:
    store = Store.open(home / "labdeck.sqlite3")
    runstore, ms = RunStore(store), MetricStore(store)
    run_id = start_run(runstore, name="resnet50-lr3e-4", started_at=time.time() - 6000)
    add_points(ms, key_of(runstore, run_id), training_curves(400))
    lab = FakeLab()
    monitor = ClusterMonitor(lab)
    monitor.add_host(spec("gpu-a"))
    window = MainWindow(monitor)
    bring_online(lab, "gpu-a", [idle_reading(i, "gpu-a") for i in range(4)])
    dispatcher = ThreadDispatcher(monitor.bus)
    services = Lab(store, monitor)
    services.dispatcher = dispatcher  # type: ignore[assignment]
    ctx = AppContext(store, runstore, ms, services)
    return World(store, runstore, ms, lab, monitor, dispatcher, window, ctx, run_id)
