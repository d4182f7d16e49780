"""The cluster view over real sshd hosts: three workstations × four simulated GPUs.

The whole chain is real — paramiko sessions to OpenSSH, the uploaded agent, the simulated
GPU replaying the H100 recording, a real process "training" on one GPU — and the test reads
what the widgets show. A frozen host must turn stale/offline within 15 s while the others
keep updating, and come back by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.hosts.cluster import ClusterMonitor
from app.ui.shell.main_window import MainWindow
from ssh_backend.factory import open_session
from ssh_backend.states import HostState

pytestmark = [pytest.mark.gui, pytest.mark.sshd, pytest.mark.timeout(90)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture
def trainer(lab):
    """A real process that the first host's simulated GPU 1 counts as its user."""
    env = {**os.environ, "LABDECK_SIM_GPUS": "1", "LABDECK_SIM_HOST": lab.hosts[0].name}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(1)", "--lr", "3e-4"],
        env=env,
    )
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def window(qtbot, lab):
    monitor = ClusterMonitor(
        lambda spec, listener: open_session(spec, listener, known_hosts=lab.known_hosts)
    )
    win = MainWindow(monitor)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    for host in lab.hosts:
        monitor.add_host(host.spec())
    monitor.start()
    yield win
    win.bridge.detach()
    win.cluster_view.stop()
    monitor.stop()


def _header(win: MainWindow, name: str) -> str:
    return win.cluster_view.groups[name].state_label.text()


def test_three_hosts_four_gpus_live_and_a_frozen_host(qtbot, lab, trainer, window) -> None:
    names = [h.name for h in lab.hosts]
    view = window.cluster_view
    qtbot.waitUntil(
        lambda: len(view.tiles()) == 12 and all(_header(window, n) == "online" for n in names),
        timeout=20_000,
    )
    # The real process shows on GPU 1 of the first host, with its owner and command.
    busy = view.groups[names[0]].tiles[1]
    qtbot.waitUntil(lambda: busy.chip.text() == "busy", timeout=10_000)
    users = {user for user, _cmd, _mem in busy.process_texts()}
    commands = " ".join(cmd for _user, cmd, _mem in busy.process_texts())
    assert users == {"root"} and "--lr 3e-4" in commands
    idle = view.groups[names[1]].tiles[2]
    assert idle.chip.text() == "free"
    assert idle.fan_label.text() == "—"  # the H100 reports no fan: never shown as 0
    assert idle.mem_label.text().endswith("/ 79.6 GiB")  # 81559 MiB, as recorded
    assert idle.power_label.text().endswith("/ 700 W")
    badge = view.groups[names[0]].simulated_badge
    assert badge.isVisibleTo(window) and "simulated" in badge.text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    qtbot.wait(1500)  # let the sparklines gather a few points for the picture
    window.grab().save(str(SCREENSHOTS / "cluster-sshd-1280x800.png"))

    frozen, others = lab.hosts[2], lab.hosts[:2]
    frozen.freeze()
    try:
        t0 = time.monotonic()
        qtbot.waitUntil(lambda: _header(window, frozen.name) in ("stale", "offline"),
                        timeout=15_000)
        marked_after = time.monotonic() - t0
        assert marked_after < 15
        # The others keep updating meanwhile.
        seen = {h.name: window.monitor.host(h.name).sample.seq for h in others}
        qtbot.waitUntil(
            lambda: all(window.monitor.host(h.name).sample.seq > seen[h.name] + 3
                        for h in others),
            timeout=5_000,
        )
        assert all(_header(window, h.name) == "online" for h in others)
        window.grab().save(str(SCREENSHOTS / "cluster-sshd-frozen.png"))
    finally:
        frozen.thaw()
    qtbot.waitUntil(lambda: window.monitor.host(frozen.name).state is HostState.ONLINE
                    and _header(window, frozen.name) == "online", timeout=40_000)
