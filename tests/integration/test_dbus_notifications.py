"""Desktop notifications against a real D-Bus: a private ``dbus-daemon`` session bus and a
small freedesktop notification server on it (``dbus-fast``, what ``desktop-notifier``
itself uses). A finished run sends exactly one Notify with its name, host and final
metric; the server's "default" action opens the run; without a server the toast shows."""

import asyncio
import subprocess
import threading
from pathlib import Path

import pytest
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method, signal

from app.core.notify_events import NotifySettings
from app.core.queue.runs import RunState
from app.ui.notify.notifications import install_notifications
from tests.harness.notify_fixtures import make_world
from tests.harness.run_fixtures import training_curves

pytestmark = pytest.mark.gui

PATH = "/org/freedesktop/Notifications"
NAME = "org.freedesktop.Notifications"
LAST_LOSS = f"{training_curves(400)['train/loss'][1][-1]:.4g}"


class NotificationServer(ServiceInterface):
    """The parts of org.freedesktop.Notifications that clients call, recording Notify."""

    def __init__(self) -> None:
        super().__init__(NAME)
        self.notify_calls: list[tuple] = []
        self.next_id = 41

    @method()
    def GetCapabilities(self) -> "as":  # noqa: F722
        return ["body", "actions"]

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: F821
        return ["labdeck-test-server", "labdeck", "1.0", "1.2"]

    @method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s",  # noqa: F821
               summary: "s", body: "s", actions: "as", hints: "a{sv}",  # noqa: F821, F722
               expire_timeout: "i") -> "u":  # noqa: F821
        self.next_id += 1
        self.notify_calls.append((self.next_id, app_name, summary, body, list(actions)))
        return self.next_id

    @method()
    def CloseNotification(self, notification_id: "u"):  # noqa: F821
        self.NotificationClosed(notification_id, 3)

    @signal()
    def ActionInvoked(self, notification_id: int, action_key: str) -> "us":  # noqa: F821
        return [notification_id, action_key]

    @signal()
    def NotificationClosed(self, notification_id: int, reason: int) -> "uu":  # noqa: F821
        return [notification_id, reason]


class ServerThread:
    """Runs the server on its own connection and loop, as a separate program would."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.server = NotificationServer()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       name="labdeck-test-dbus-server", daemon=True)
        self.thread.start()
        self.bus: MessageBus | None = None
        self._call(self._start())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self) -> None:
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.export(PATH, self.server)
        await self.bus.request_name(NAME)

    def click(self, notification_id: int) -> None:
        self.loop.call_soon_threadsafe(self.server.ActionInvoked, notification_id, "default")

    def stop(self) -> None:
        async def stop() -> None:
            assert self.bus is not None
            self.bus.disconnect()
            await self.bus.wait_for_disconnect()

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def session_bus(monkeypatch: pytest.MonkeyPatch):
    """A private session bus (``dbus-daemon`` from the ``dbus`` package)."""
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = daemon.stdout.readline().strip()
        assert address.startswith("unix:"), daemon.stderr.read()
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address
    finally:
        daemon.terminate()
        daemon.communicate(timeout=10)


@pytest.fixture
def world(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    w = make_world(tmp_path)
    qtbot.addWidget(w.window)
    w.window.resize(1280, 800)
    yield w
    w.monitor.stop()
    w.store.close()


def _notifier(qtbot, world, opened: list[str]):
    notifier = install_notifications(world.window, world.ctx, opened.append)
    qtbot.waitUntil(lambda: notifier.settings_loaded, timeout=5000)
    notifier.set_settings(NotifySettings(quiet_when_focused=False))
    assert not notifier.channels[0].available()  # offscreen: no system tray
    assert notifier.channels[1].available()
    return notifier


def test_finished_run_sends_one_notify_and_its_click_opens_the_run(
        qtbot, session_bus: str, world) -> None:
    server = ServerThread(session_bus)
    opened: list[str] = []
    notifier = _notifier(qtbot, world, opened)
    try:
        world.finish(RunState.SUCCEEDED, exit_code=0)
        with qtbot.waitSignal(notifier.notified, timeout=15000) as blocker:
            world.dispatcher.fire(world.run_id, times=4)
        event, channel = blocker.args
        assert channel == "desktop"
        world.dispatcher.fire(world.run_id, times=2)  # the same finish again: nothing new
        qtbot.wait(300)
        qtbot.waitUntil(lambda: not notifier._worker.is_busy(), timeout=5000)

        assert len(server.server.notify_calls) == 1
        nid, app_name, summary, body, actions = server.server.notify_calls[0]
        assert app_name == "Labdeck"
        assert summary == "resnet50-lr3e-4 finished"
        assert "gpu-a" in body and f"train/loss {LAST_LOSS}" in body and "1 h 23 min" in body
        assert "default" in actions  # so that a click on the body is reported
        assert notifier.channels[2].toast is None  # no toast on top of it
        assert notifier.dock.view.events() == [event]

        server.click(nid)
        qtbot.waitUntil(lambda: opened == [world.run_id], timeout=10000)
    finally:
        notifier.close()
        server.stop()


def test_without_a_notification_server_the_toast_shows(qtbot, session_bus: str,
                                                       world) -> None:
    opened: list[str] = []
    world.window.show()
    notifier = _notifier(qtbot, world, opened)
    try:
        world.finish(RunState.FAILED, exit_code=2)
        with qtbot.waitSignal(notifier.notified, timeout=15000) as blocker:
            world.dispatcher.fire(world.run_id)
        _event, channel = blocker.args
        assert channel == "toast"
        toast = notifier.channels[2].toast
        assert toast is not None and toast.isVisible()
        assert toast.title.text() == "resnet50-lr3e-4 failed"
    finally:
        notifier.close()
