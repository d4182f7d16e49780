"""The status bar, the tray, the free-GPUs notification and the scheduler count the same
free GPUs: a reserved GPU and a GPU leased by a run are free for none of them (each asks
``gpufree.gpu_busy_reason``, with the reservations the Lab's dispatcher last read)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.core.hosts.cluster import ClusterMonitor
from app.core.lab import Lab
from app.core.notify_events import NotifySettings
from app.core.queue.scheduler import free_gpus
from app.core.store import Store
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.notify.notifications import Notifier
from app.ui.notify.tray import LabTray
from app.ui.shell.main import open_lab_window
from tests.harness.gui_fakes import FakeLab, bring_online, idle_reading, spec
from tests.harness.notify_fixtures import FakeChannel

pytestmark = pytest.mark.gui


def test_status_bar_tray_notification_and_scheduler_agree(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = Store.open(tmp_path / "labdeck.sqlite3")
    fake = FakeLab()
    monitor = ClusterMonitor(fake)
    monitor.add_host(spec("gpu-a"))
    lab = Lab(store, monitor)
    lab.runstore.reserve("gpu-a", 0, "kept for a demo")
    lab.dispatcher.step()  # the dispatcher reads the reservations as each step does
    window, features = open_lab_window(lab)
    qtbot.addWidget(window)
    ctx = AppContext.of(lab)
    worker = DataWorker("labdeck-agreement-test")
    tray = LabTray(window, ctx, worker)
    toast = FakeChannel("toast", [])
    notifier = Notifier(window, ctx, lambda run_id: None, channels=[toast],
                        is_focused=lambda: False)
    try:
        leased = replace(idle_reading(1, "gpu-a"), leased_by="r-7")
        bring_online(fake, "gpu-a", [idle_reading(0, "gpu-a"), leased,
                                     idle_reading(2, "gpu-a"), idle_reading(3, "gpu-a")])
        qtbot.waitUntil(lambda: window.summary_label.text() == "1 host · 4 GPUs · 2 free",
                        timeout=5000)

        view = monitor.host("gpu-a")
        assert view is not None
        assert free_gpus(view, lab.dispatcher.reserved_now()) == [2, 3]

        with qtbot.waitSignal(tray.summary_changed, timeout=5000):
            tray.refresh_now()
        assert tray.icon.toolTip().startswith("Labdeck — 2 GPUs free")
        assert tray.summary is not None and tray.summary.host_lines() == ["gpu-a: 2/4 GPUs free"]

        qtbot.waitUntil(lambda: notifier.settings_loaded, timeout=5000)
        notifier.set_settings(NotifySettings(free_gpus=3, quiet_when_focused=False))
        notifier.check_watches()  # 3 wanted, 2 free: nothing
        qtbot.waitUntil(lambda: not notifier._worker.is_busy(), timeout=5000)
        qtbot.wait(50)
        assert toast.shown == []
        notifier.set_settings(NotifySettings(free_gpus=2, quiet_when_focused=False))
        with qtbot.waitSignal(notifier.notified, timeout=5000) as blocker:
            notifier.check_watches()
        assert blocker.args[0].title == "2 GPUs free on gpu-a"
    finally:
        notifier.close()
        tray.close()
        worker.stop()
        features.close()
        window.bridge.detach()
        window.cluster_view.stop()
        lab.close()
        store.close()
