"""``labdeck --demo --self-test``: the real window over the real demo lab (local sessions,
simulated GPUs, real runs), rendered once the lab is lively: some GPUs busy, some free,
and a training run on a GPU."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop
from PySide6.QtWidgets import QApplication

from app.core.demo import gpu_counts, prepare_demo
from app.core.lab import Lab
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.ui.shell.main_window import MainWindow
from app.ui.shell.selfcheck import SIZE, render_checked
from app.ui.shell.selfcheck import fail as _fail

DEMO_WAIT_S = 60.0
STORE_POLL_S = 0.5
SETTLE_S = 4.0


def run_demo_self_test(app: QApplication, screenshot: Path | None) -> int:
    """Prepare the demo in the current ``LABDECK_HOME``, show it, wait, render; 0 or 1."""
    with Store.open() as store:
        lab = prepare_demo(store)
        services = Lab.open(store)
        window = MainWindow(services.monitor)
        runstore = RunStore(store)
        try:
            window.resize(SIZE)
            window.show()
            services.start()
            started = time.monotonic()
            running = 0
            polled = 0.0
            counts = (0, 0, 0)
            while time.monotonic() - started < DEMO_WAIT_S:
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
                counts = gpu_counts(services.monitor.hosts())
                if time.monotonic() - polled >= STORE_POLL_S:
                    polled = time.monotonic()
                    running = runstore.count([RunState.RUNNING])
                if counts[0] and counts[1] and counts[2] and running:
                    break
                time.sleep(0.02)
            else:
                busy, free, training = counts
                return _fail(f"the demo lab did not come alive within {DEMO_WAIT_S:.0f} s: "
                             f"{busy} GPUs busy, {free} free, {training} training, "
                             f"{running} runs running")
            # A few more seconds, so the sparklines have a history and more runs started.
            settle = time.monotonic() + SETTLE_S
            while time.monotonic() < settle:
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
                time.sleep(0.02)
            counts = gpu_counts(services.monitor.hosts())
            running = runstore.count([RunState.RUNNING])
            busy, free, training = counts
            return render_checked(
                app, window, screenshot,
                f" (demo lab after {time.monotonic() - started:.1f} s: {busy} GPUs busy, "
                f"{free} free, {running} runs running)")
        finally:
            window.bridge.detach()
            window.cluster_view.stop()
            services.stop()
            lab.stop()
            window.hide()
            window.deleteLater()
            QCoreApplication.sendPostedEvents(None, 0)
