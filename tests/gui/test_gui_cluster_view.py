"""The cluster view over a real ClusterMonitor fed by fake sessions with H100 readings."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from app.core.hosts.cluster import ClusterMonitor
from app.ui.cluster.gpu_tile import GpuTile
from app.ui.shell.main_window import MainWindow
from ssh_backend.hostkeys import HostKeyQuestion
from ssh_backend.states import HostState
from tests.harness.gui_fakes import (
    TRAIN,
    FakeLab,
    FakeSession,
    bring_online,
    busy_reading,
    idle_reading,
    spec,
)

pytestmark = pytest.mark.gui
HOSTS = ("gpu-a", "gpu-b", "gpu-c")


@pytest.fixture
def lab_window(qtbot):
    lab = FakeLab()
    monitor = ClusterMonitor(lab)
    window = MainWindow(monitor)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    for name in HOSTS:
        monitor.add_host(spec(name, simulated=name == "gpu-c"))
    monitor.start()
    yield lab, monitor, window
    window.bridge.detach()
    window.cluster_view.stop()
    monitor.stop()


def _readings(name: str) -> list:
    # GPU 0 of every host trains; gpu-b's GPU 1 too; the rest idle: 12 GPUs, 8 free.
    busy = {0} | ({1} if name == "gpu-b" else set())
    return [busy_reading(i, name) if i in busy else idle_reading(i, name) for i in range(4)]


def _tile(window: MainWindow, host: str, index: int) -> GpuTile:
    return window.cluster_view.groups[host].tiles[index]


def _online(qtbot, lab: FakeLab, window: MainWindow) -> None:
    for name in HOSTS:
        bring_online(lab, name, _readings(name), simulated=name == "gpu-c")
    qtbot.waitUntil(lambda: len(window.cluster_view.tiles()) == 12
                    and window.summary_label.text() == "3 hosts · 12 GPUs · 8 free",
                    timeout=3000)


def test_tiles_show_the_readings(qtbot, lab_window) -> None:
    lab, _monitor, window = lab_window
    _online(qtbot, lab, window)
    idle = _tile(window, "gpu-a", 2)
    assert idle.title_label.full_text() == "GPU 2 · H100 80GB HBM3"
    assert idle.temp_label.text() == "50 °C"
    assert idle.power_label.text() == "79 W / 700 W"
    assert idle.fan_label.text() == "—"  # NVML: fan NotSupported, never 0
    assert idle.load_label.text() == "0 %"
    assert idle.mem_label.text() == "0.5 / 79.6 GiB"
    assert idle.chip.text() == "free" and idle.process_texts() == []
    busy = _tile(window, "gpu-a", 0)
    assert busy.chip.text() == "busy"
    assert busy.load_label.text() == "100 %"
    assert busy.power_label.text() == "649 W / 700 W"
    assert busy.mem_label.text() == "4.1 / 79.6 GiB"
    assert busy.process_texts() == [("alice", TRAIN.command, "1.0 GiB")]
    assert TRAIN.command in busy.process_rows[0].command.toolTip()
    assert busy.isEnabled() and busy.isVisibleTo(window)


def test_header_follows_host_state(qtbot, lab_window) -> None:
    lab, _monitor, window = lab_window
    _online(qtbot, lab, window)
    group = window.cluster_view.groups["gpu-a"]
    assert group.state_label.text() == "online"
    assert window.cluster_view.groups["gpu-c"].simulated_badge.isVisibleTo(window)
    assert not group.simulated_badge.isVisibleTo(window)

    lab.sessions["gpu-a"].report_state(HostState.STALE, "no reading for 23 s")
    qtbot.waitUntil(lambda: group.state_label.text() == "stale", timeout=3000)
    assert group.detail_label.text() == "no reading for 23 s"
    assert group.age_label.text().startswith("last data ") and group.age_label.text().endswith(
        " s ago")
    assert not group.body.isEnabled()  # tiles greyed
    assert window.summary_label.text() == "3 hosts · 12 GPUs · 5 free"  # stale is not free

    lab.sessions["gpu-a"].report_state(HostState.OFFLINE, "connection refused")
    qtbot.waitUntil(lambda: group.state_label.text() == "offline", timeout=3000)
    assert group.reconnect_button.isVisibleTo(window)

    lab.sessions["gpu-a"].report_state(HostState.HOSTKEY_CHANGED)
    qtbot.waitUntil(lambda: group.state_label.text() == "host key CHANGED", timeout=3000)
    assert "will not connect" in group.detail_label.text()
    assert group.help_button.isVisibleTo(window)
    assert not group.trust_button.isVisibleTo(window)

    lab.sessions["gpu-a"].report_state(HostState.HOSTKEY_UNKNOWN)
    qtbot.waitUntil(lambda: group.state_label.text() == "host key unknown", timeout=3000)
    assert group.trust_button.isVisibleTo(window)

    lab.sessions["gpu-a"].report_state(HostState.NEEDS_REBOOT)
    qtbot.waitUntil(
        lambda: group.state_label.text() == "needs reboot (driver mismatch)", timeout=3000)
    assert "reboot" in group.detail_label.text()


def test_removed_host_disappears(qtbot, lab_window) -> None:
    lab, monitor, window = lab_window
    _online(qtbot, lab, window)
    monitor.remove_host("gpu-b")
    qtbot.waitUntil(lambda: "gpu-b" not in window.cluster_view.groups, timeout=3000)
    assert len(window.cluster_view.tiles()) == 8
    qtbot.waitUntil(lambda: window.summary_label.text() == "2 hosts · 8 GPUs · 6 free",
                    timeout=3000)
    assert lab.sessions["gpu-b"].stopped.wait(3)


def test_trust_button_asks_again_and_reconnects(qtbot, lab_window) -> None:
    lab, _monitor, window = lab_window
    session: FakeSession = lab.sessions["gpu-a"]
    question = HostKeyQuestion("gpu-a.lab", 22, "ssh-ed25519", "SHA256:abc")
    # The session asked once and the user declined.
    with qtbot.waitSignal(window.prompter.prompt_shown, timeout=3000) as shown:
        answers: list[bool] = []
        t = threading.Thread(target=lambda: answers.append(window.prompter(question)),
                             name="fake-ask")
        t.start()
    shown.args[0].reject()
    t.join(3)
    assert answers == [False]
    session.report_state(HostState.HOSTKEY_UNKNOWN)
    groups = window.cluster_view.groups
    qtbot.waitUntil(lambda: "gpu-a" in groups
                    and groups["gpu-a"].trust_button.isVisibleTo(window), timeout=3000)
    group = groups["gpu-a"]
    with qtbot.waitSignal(window.prompter.prompt_shown, timeout=3000) as shown:
        group.trust_button.click()
    shown.args[0].accept()
    qtbot.waitUntil(lambda: session.reconnects == 1, timeout=3000)
    assert window.prompter(question) is True  # the reconnect's question: no second dialog


def test_close_stops_the_monitor(qtbot, lab_window) -> None:
    lab, _monitor, window = lab_window
    with qtbot.waitSignal(window.closed, timeout=5000):
        window.close()
    assert all(s.stopped.is_set() for s in lab.sessions.values())
    assert not window.isVisible()


def test_reserved_and_leased_gpus_are_busy_by_the_schedulers_rule(qtbot, lab_window) -> None:
    """One rule for free: a GPU a labmate reserved (the lab board, as the dispatcher read
    it) or a run's lease holds is not free in the tiles nor in the status bar."""
    lab, _monitor, window = lab_window
    reserved = {("gpu-a", 2): "reserved by bob until 18:00 — manual <b>debugging</b>"}
    window.cluster_view.set_reserved_source(lambda: reserved)
    readings = _readings("gpu-a")
    readings[3] = replace(idle_reading(3, "gpu-a"), leased_by="r-labmate")
    bring_online(lab, "gpu-a", readings)
    for name in ("gpu-b", "gpu-c"):
        bring_online(lab, name, _readings(name), simulated=name == "gpu-c")
    qtbot.waitUntil(lambda: window.summary_label.text() == "3 hosts · 12 GPUs · 6 free",
                    timeout=3000)
    tile = _tile(window, "gpu-a", 2)
    qtbot.waitUntil(lambda: tile.no_process_label.text().startswith(
        "Reserved by bob until 18:00"), timeout=3000)
    assert tile.no_process_label.text().endswith("manual <b>debugging</b>")  # plain text
    assert _tile(window, "gpu-a", 3).no_process_label.text() == "Leased by run r-labmate"
