"""A finished run gives exactly one notification through the first channel that delivers;
clicks open the run; quiet-while-focused and event choices only list; watched conditions;
the settings dialog; the tray summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QSystemTrayIcon

from app.core.notify_events import NotifyEvent, NotifySettings, load_settings
from app.core.queue.runs import RunState
from app.ui.notify.channels import DesktopChannel, ToastChannel, TrayChannel
from app.ui.notify.notifications import Notifier, install_notifications
from app.ui.notify.tray import LabTray
from tests.harness.notify_fixtures import FakeChannel, World, make_world
from tests.harness.run_fixtures import training_curves

pytestmark = pytest.mark.gui

LAST_LOSS = f"train/loss {training_curves(400)['train/loss'][1][-1]:.4g}"


@pytest.fixture
def world(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    w = make_world(tmp_path)
    qtbot.addWidget(w.window)
    w.window.resize(1280, 800)
    yield w
    w.monitor.stop()
    w.store.close()


def make_notifier(qtbot, world: World, channels, focused: bool = False,
                  opened: list[str] | None = None) -> Notifier:
    opened = opened if opened is not None else []
    notifier = Notifier(world.window, world.ctx, opened.append, channels=channels,
                        is_focused=lambda: focused)
    qtbot.waitUntil(lambda: notifier.settings_loaded, timeout=5000)
    return notifier


def finish_and_wait(qtbot, world: World, notifier: Notifier,
                    state: RunState = RunState.SUCCEEDED, **fields) -> tuple[NotifyEvent, str]:
    world.finish(state, **fields)
    with qtbot.waitSignal(notifier.notified, timeout=5000) as blocker:
        world.dispatcher.fire(world.run_id, times=5)  # a burst of reports of one change
    # Later reports of the same finish must not notify again.
    world.dispatcher.fire(world.run_id, times=3)
    qtbot.wait(100)
    qtbot.waitUntil(lambda: not notifier._worker.is_busy(), timeout=5000)
    qtbot.wait(50)
    event, channel = blocker.args
    return event, channel


CHAINS = [
    # (tray available, desktop available, desktop delivers) → channel, calls in order
    ((True, True, True), "tray", ["tray?", "tray!"]),
    ((False, True, True), "desktop", ["tray?", "desktop?", "desktop!"]),
    ((False, True, False), "toast", ["tray?", "desktop?", "desktop!", "toast?", "toast!"]),
    ((False, False, True), "toast", ["tray?", "desktop?", "toast?", "toast!"]),
]


@pytest.mark.parametrize(("flags", "expected", "calls"), CHAINS)
def test_finished_run_gives_exactly_one_notification_down_the_chain(
        qtbot, world: World, flags, expected: str, calls: list[str]) -> None:
    tray_ok, desktop_ok, desktop_delivers = flags
    log: list[str] = []
    channels = [FakeChannel("tray", log, tray_ok), FakeChannel("desktop", log, desktop_ok,
                                                                desktop_delivers),
                FakeChannel("toast", log)]
    notifier = make_notifier(qtbot, world, channels)
    event, channel = finish_and_wait(qtbot, world, notifier)

    assert channel == expected
    assert log == calls
    delivered = [(c.name, e) for c in channels for e in c.shown]
    assert delivered == [(expected, event)]
    assert event.title == "resnet50-lr3e-4 finished"
    assert event.body == f"on gpu-a:0,1 · 1 h 23 min · {LAST_LOSS}"
    assert notifier.dock.view.events() == [event]
    notifier.close()


def test_real_toast_shows_and_its_click_opens_the_run(qtbot, world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    opened: list[str] = []
    notifier = install_notifications(world.window, world.ctx, opened.append)
    world.window.show()
    qtbot.waitUntil(lambda: notifier.settings_loaded, timeout=5000)
    assert [c.name for c in notifier.channels] == ["tray", "desktop", "toast"]
    assert not notifier.channels[0].available()  # offscreen: no system tray
    assert not notifier.channels[1].available()  # no session bus
    assert world.window.isActiveWindow() and notifier.settings.quiet_when_focused
    notifier.set_settings(NotifySettings(quiet_when_focused=False))

    _event, channel = finish_and_wait(qtbot, world, notifier, RunState.FAILED, exit_code=1,
                                     reason="NaN loss at step 399")
    assert channel == "toast"
    toast = notifier.channels[2].toast
    assert toast is not None and toast.isVisible()
    assert toast.title.text() == "resnet50-lr3e-4 failed"
    assert "exit code 1 · NaN loss at step 399" in toast.body.text()
    assert LAST_LOSS in toast.body.text()
    # Bottom-right inside the window, above the status bar.
    geo = toast.geometry()
    assert geo.right() > world.window.width() - 40 and geo.bottom() < world.window.height()
    qtbot.mouseClick(toast, Qt.MouseButton.LeftButton)
    assert opened == [world.run_id]
    assert not toast.isVisible()

    # The list keeps it; a click there opens the run too.
    notifier.toggle_list_action.trigger()
    assert notifier.dock.isVisible()
    view = notifier.dock.view.list
    assert view.count() == 1 and "resnet50-lr3e-4 failed" in view.item(0).text()
    rect = view.visualItemRect(view.item(0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == [world.run_id, world.run_id]
    notifier.close()


def test_quiet_while_focused_lists_without_popup(qtbot, world: World) -> None:
    log: list[str] = []
    channels = [FakeChannel("tray", log), FakeChannel("toast", log)]
    notifier = make_notifier(qtbot, world, channels, focused=True)
    event, channel = finish_and_wait(qtbot, world, notifier, RunState.CANCELLED)
    assert channel == "" and log == []
    assert notifier.dock.view.events() == [event]
    assert "(not shown as a popup)" in notifier.dock.view.list.item(0).toolTip()
    notifier.close()


def test_unchosen_event_kind_is_only_listed_and_settings_persist(qtbot, world: World) -> None:
    log: list[str] = []
    notifier = make_notifier(qtbot, world, [FakeChannel("toast", log)])
    dialog = notifier.open_settings()
    dialog.event_boxes["lost"].setChecked(False)
    dialog.quiet.setChecked(False)
    dialog.free_gpus.setValue(3)
    dialog.stall_runs.setText(f"{world.run_id}, other-run")
    with qtbot.waitSignal(notifier.settings_changed, timeout=2000):
        dialog.accept()
    qtbot.waitUntil(lambda: not notifier._worker.is_busy(), timeout=5000)
    stored = load_settings(world.store)
    assert stored == notifier.settings
    assert stored.events == frozenset({"succeeded", "failed", "cancelled"})
    assert stored.free_gpus == 3 and stored.stall_runs == (world.run_id, "other-run")
    assert not stored.quiet_when_focused

    event, channel = finish_and_wait(qtbot, world, notifier, RunState.LOST,
                                     reason="gpu-a rebooted")
    assert channel == "" and log == []
    assert event.title == "resnet50-lr3e-4 was lost"
    notifier.close()


def test_free_gpus_watch_notifies_once(qtbot, world: World) -> None:
    log: list[str] = []
    toast = FakeChannel("toast", log)
    notifier = make_notifier(qtbot, world, [toast])
    notifier.set_settings(NotifySettings(free_gpus=4, quiet_when_focused=False))
    assert notifier._watch_timer.isActive()
    with qtbot.waitSignal(notifier.notified, timeout=5000) as blocker:
        notifier.check_watches()
    event, channel = blocker.args
    assert channel == "toast" and event.title == "4 GPUs free on gpu-a"
    notifier.check_watches()  # still holding: nothing new
    qtbot.waitUntil(lambda: not notifier._worker.is_busy(), timeout=5000)
    qtbot.wait(50)
    assert len(toast.shown) == 1
    notifier.close()


def test_tray_channel_click_opens_the_last_message(qtbot) -> None:
    icon = QSystemTrayIcon()
    clicked: list[NotifyEvent] = []
    channel = TrayChannel(icon, clicked.append)
    assert not channel.available()  # not shown, and no tray offscreen
    event = NotifyEvent("succeeded", "bert finished", "on gpu-b", run_id="abcd-1234")
    results: list[bool] = []
    channel.show(event, results.append)
    assert results == [True]
    icon.messageClicked.emit()
    assert clicked == [event]
    assert TrayChannel(None, clicked.append).available() is False


def test_desktop_channel_is_unavailable_without_a_session_bus(
        qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    channel = DesktopChannel(lambda e: None)
    assert not channel.available()
    (tmp_path / "bus").touch()
    assert channel.available()
    channel.close()
    assert not channel.available()


def test_tray_summary_counts_free_gpus_and_runs(qtbot, world: World) -> None:
    from app.ui.common.data_worker import DataWorker

    worker = DataWorker("labdeck-tray-test")
    tray = LabTray(world.window, world.ctx, worker)
    # Reserved by a labmate on the host's lab board, as the dispatcher last read it.
    world.ctx.services.dispatcher.reserved[("gpu-a", 3)] = "reserved by bob until 18:00"
    with qtbot.waitSignal(tray.summary_changed, timeout=5000) as blocker:
        tray.refresh_now()
    summary = blocker.args[0]
    assert summary.host_lines() == ["gpu-a: 3/4 GPUs free"]
    assert summary.runs_line() == "1 running · 0 queued"
    assert tray.icon.toolTip().startswith("Labdeck — 3 GPUs free")
    texts = [a.text() for a in tray.menu.actions()]
    assert texts[:2] == ["gpu-a: 3/4 GPUs free", "1 running · 0 queued"]
    assert "Quit Labdeck" in texts
    world.window.show()
    tray.toggle_window()
    assert not world.window.isVisible()
    tray.toggle_window()
    assert world.window.isVisible()
    tray.close()
    worker.stop()


def test_toast_channel_replaces_and_places(qtbot, world: World) -> None:
    world.window.show()
    clicked: list[NotifyEvent] = []
    channel = ToastChannel(world.window, clicked.append)
    a = NotifyEvent("succeeded", "a finished", "on gpu-a", run_id="aaaa-1")
    b = NotifyEvent("failed", "b failed", "on gpu-b", run_id="bbbb-2")
    channel.show(a, lambda ok: None)
    channel.show(b, lambda ok: None)
    toast = channel.toast
    assert toast.title.text() == "b failed"
    qtbot.mouseClick(toast, Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    assert clicked == [b]
    channel.close()
