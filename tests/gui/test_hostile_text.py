"""Text from hosts and labmates is shown as text, in every window: a process, GPU, host,
user, run, reason, tag, parameter or metric named with markup, controls or a 100 kB
string never makes Qt (or pyqtgraph) interpret it, and never fills a label."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import html
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import desktop_notifier
import pytest
from hostile_text import (
    BOLD,
    Canary,
    Hostile,
    label_problems,
    plot_problems,
    plot_texts,
    tooltip_problems,
)
from PySide6 import QtGui
from PySide6.QtWidgets import QApplication, QLabel, QSystemTrayIcon

from app.core.notify_events import NotifyEvent
from app.core.queue.runs import RunState
from app.ui.cluster.hostkey_dialog import HostKeyDialog, show_hostkey_changed
from app.ui.common.context import RunContext
from app.ui.compare.window import open_compare_window
from app.ui.notify.channels import DesktopChannel, ToastChannel, TrayChannel
from app.ui.notify.notifications import Notifier
from app.ui.run_window.window import open_run_window
from app.ui.runs.page import install_runs_page
from app.ui.submit.dialog import open_submit_dialog
from ssh_backend.hostkeys import HostKeyQuestion
from ssh_backend.protocol import GpuProcess, TailChunk
from ssh_backend.states import HostState
from tests.harness.gui_fakes import busy_reading, h100_hello, idle_reading, spec
from tests.harness.notify_fixtures import World, make_world
from tests.harness.run_fixtures import HOST, add_points, key_of, start_run, training_curves

pytestmark = pytest.mark.gui
UI = Path(__file__).resolve().parents[2] / "app" / "ui"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    canary = Canary(tmp_path)
    yield Hostile(canary)
    opens = canary.opens()
    canary.close()
    assert opens == 0, "a widget interpreted <img src=…> and opened the file"


@pytest.fixture
def world(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    w = make_world(tmp_path)
    qtbot.addWidget(w.window)
    w.window.resize(1280, 800)
    yield w
    w.window.bridge.detach()
    w.window.cluster_view.stop()
    w.monitor.stop()
    w.store.close()


def _feed_hosts(world: World, hostile: Hostile) -> None:
    """gpu-a: a labmate's process; gpu-b: a refused login; gpu-c: no GPU, odd driver."""
    hello = h100_hello("gpu-a", 4)
    gpus = tuple(dataclasses.replace(g, name=hostile.text("gpu")) for g in hello.gpus)
    world.lab.sessions["gpu-a"].report_hello(
        dataclasses.replace(hello, hostname=hostile.text("hostname"), gpus=gpus))
    proc = GpuProcess(pid=7, user=hostile.text("user"), command=hostile.huge("command"),
                      mem_mib=900.0)
    world.lab.sessions["gpu-a"].report_sample(
        [busy_reading(0, "gpu-a", proc)] + [idle_reading(i, "gpu-a") for i in (1, 2, 3)])
    for name in ("gpu-b", "gpu-c"):
        world.monitor.add_host(spec(name))
    world.lab.sessions["gpu-b"].report_state(HostState.AUTH_FAILED, hostile.huge("detail"))
    gpu_c = world.lab.sessions["gpu-c"]
    gpu_c.report_hello(dataclasses.replace(h100_hello("gpu-c", 0),
                                           backend_detail=hostile.text("driver")))
    gpu_c.report_state(HostState.ONLINE)


def _hostile_run(world: World, hostile: Hostile) -> str:
    """A failed run whose name, owner, tag, parameters, metrics and reason are hostile."""
    runstore, ms = world.runstore, world.metricstore
    run_id = start_run(runstore, name=hostile.text("run"), user=hostile.text("owner"),
                       params={"lr": hostile.text("value")}, tags=[hostile.text("tag")],
                       gpus=(2,), started_at=time.time() - 600)
    key = key_of(runstore, run_id)
    curves = training_curves(200)
    add_points(ms, key, {hostile.text("metric"): curves["train/loss"],
                         "train/loss": curves["train/loss"]})
    ms.ingest([(HOST, TailChunk(key, "metrics.params", 5, 0, 1,
                                params={hostile.text("recorded"): hostile.huge("value")}))])
    assert runstore.transition(run_id, RunState.RUNNING, RunState.FAILED, exit_code=1,
                               reason=hostile.huge("reason"), ended_at=time.time())
    return run_id


@pytest.fixture
def screens(qtbot, world: World, hostile: Hostile) -> Iterator[SimpleNamespace]:
    """Every window Labdeck has, open, shown and fed with hostile text."""
    window = world.window
    window.show()
    _feed_hosts(world, hostile)
    run_id = _hostile_run(world, hostile)
    # The stand-in dispatcher of these windows has no ingestor for the page to listen to.
    page = install_runs_page(window, dataclasses.replace(world.ctx, services=None))
    window.tabs.setCurrentWidget(page)
    notifier = Notifier(window, world.ctx, lambda _id: None, is_focused=lambda: False,
                        channels=[ToastChannel(window, lambda _e: None)])
    run_window = open_run_window(run_id, RunContext(world.runstore, world.metricstore,
                                                    world.monitor))
    compare = open_compare_window([world.run_id, run_id], world.ctx)
    submit = open_submit_dialog(window, world.ctx, world.runstore.get(run_id).spec,
                                pin_host="gpu-a")
    key_dialog = HostKeyDialog(HostKeyQuestion(hostile.text("host"), 22,
                                               hostile.text("key"), "SHA256:x"), window)
    key_dialog.open()
    changed = show_hostkey_changed(window, hostile.text("host"))
    try:
        window.action_failed.emit(hostile.huge("error"))
        qtbot.waitUntil(lambda: notifier.settings_loaded, timeout=5000)
        notifier.dock.show()
        with qtbot.waitSignal(notifier.notified, timeout=5000):
            world.dispatcher.fire(run_id)
        groups = window.cluster_view.groups
        qtbot.waitUntil(lambda: len(groups) == 3 and 0 in groups["gpu-a"].tiles
                        and bool(groups["gpu-a"].tiles[0].process_texts()), timeout=5000)
        qtbot.waitUntil(lambda: page.model.is_loaded() and page.model.rowCount() == 2,
                        timeout=10_000)
        qtbot.waitUntil(lambda: run_window.run is not None and run_window.curves.settled()
                        and len(run_window.curves.series_names()) == 2, timeout=10_000)
        qtbot.waitUntil(lambda: compare.reads > 0 and compare.curves.settled()
                        and not compare.worker.is_busy(), timeout=10_000)
        qtbot.waitUntil(lambda: bool(submit.items), timeout=5000)
        qtbot.wait(300)  # layouts and paints of everything shown
        yield SimpleNamespace(run_window=run_window, compare=compare)
    finally:
        changed.close()
        key_dialog.reject()
        submit.done(0)
        compare.close()
        run_window.close()
        notifier.close()
        page.stop()


@pytest.mark.timeout(90)
def test_every_window_shows_hostile_text_as_text(screens: SimpleNamespace,
                                                 hostile: Hostile) -> None:
    assert QtGui.Qt.mightBeRichText(hostile.text("x"))  # what Qt would take as markup
    roots = QApplication.topLevelWidgets()
    problems = [p for root in roots for p in (label_problems(root, hostile)
                                              + tooltip_problems(root, hostile)
                                              + plot_problems(root))]
    opens = hostile.canary.opens()
    if opens:
        problems.insert(0, f"widgets interpreted <img src=…> and opened the file {opens} times")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])
    # The hostile strings did reach the screen (so the checks above checked something).
    shown = [label for root in roots for label in root.findChildren(QLabel)
             if BOLD in label.text()]
    assert len(shown) >= 10
    for plotted in (screens.run_window, screens.compare):
        assert any(BOLD in item.toPlainText() for item in plot_texts(plotted))


def _event(hostile: Hostile) -> NotifyEvent:
    return NotifyEvent("failed", hostile.text("title"), hostile.huge("body"), run_id="r-1")


def test_tray_messages_carry_no_markup(qtbot, hostile: Hostile) -> None:
    # The tray may hand its message to the desktop's notification server, which reads
    # markup in the body; where it draws a balloon itself the text is plain.
    icon = QSystemTrayIcon()
    sent: list[tuple] = []
    icon.showMessage = lambda *args: sent.append(args)  # type: ignore[method-assign]
    TrayChannel(icon, lambda _e: None).show(_event(hostile), lambda _ok: None)
    ((title, body, *_rest),) = sent
    assert not any(c in body for c in "<>&") and "bold" in body and len(body) < 5000
    assert title.startswith(hostile.img) and len(title) < 5000


def test_desktop_notifications_escape_their_body(hostile: Hostile,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list = []

    class FakeNotifier:
        def __init__(self, **_kwargs: object) -> None:
            pass

        async def send_notification(self, note) -> None:
            sent.append(note)
            note.on_dispatched()

    monkeypatch.setattr(desktop_notifier, "DesktopNotifier", FakeNotifier)
    channel = DesktopChannel(lambda _e: None)
    assert asyncio.run(channel._send(_event(hostile)))
    (note,) = sent
    # freedesktop: the body may be markup, the summary is plain text.
    assert "<" not in note.message and html.escape(hostile.img) in note.message
    assert "&amp;amp;" in note.message and len(note.message) < 5000
    assert note.title.startswith(hostile.img)


def test_no_module_builds_a_label_that_guesses() -> None:
    """Every label of app/ui is built plain (or rich on purpose) in app/ui/common/plain_text.py:
    a bare QLabel guesses rich text from whatever it is given."""
    bare = []
    for path in sorted(UI.rglob("*.py")):
        if path == UI / "common" / "plain_text.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and (
                    getattr(node.func, "id", None) == "QLabel"
                    or getattr(node.func, "attr", None) == "QLabel"):
                bare.append(f"{path.relative_to(UI)}:{node.lineno}")
    assert not bare, f"bare QLabel built at {bare}: use app.ui.common.plain_text"

