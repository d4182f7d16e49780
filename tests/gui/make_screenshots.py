"""Render the cluster view of a small lab to PNGs, for looking at the layout.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/gui/make_screenshots.py [out_dir]

Writes cluster-1280x800.png, cluster-900x700.png and cluster-1280x1500.png (default
folder artifacts/screenshots/). The hosts are fake sessions fed with recorded H100
values; five minutes of history are fed through the real monitor with its clock set
back, so the sparklines show what they show after a while.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from unittest import mock

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication

import app.core.hosts.cluster as cluster_mod
from app.core.hosts.cluster import ClusterMonitor
from app.ui.shell.app import create_application
from app.ui.shell.main_window import MainWindow
from ssh_backend.protocol import GpuProcess, GpuReading
from ssh_backend.states import HostState
from tests.harness.gui_fakes import (
    TRAIN,
    FakeLab,
    bring_online,
    busy_reading,
    idle_reading,
    spec,
)

SIZES = ((1280, 800), (900, 700), (1280, 1500))
TILES = 4 + 4 + 2  # gpu-a, gpu-b, sim-e; gpu-c and gpu-d never got to their GPUs
BOB = GpuProcess(pid=2210, user="bob",
                 command="torchrun --nproc_per_node 2 finetune.py --config cfg/llama-8b.yaml "
                 "--batch-size 16 --grad-accum 4", mem_mib=61440.0)
BOB_2 = GpuProcess(pid=2211, user="bob", command="python -m tensorboard.main --logdir runs",
                   mem_mib=520.0)


def _at(t: float) -> types.SimpleNamespace:
    return types.SimpleNamespace(time=lambda: t, monotonic=time.monotonic)


def _lab_readings(step: int) -> dict[str, list[GpuReading]]:
    ramp = 100.0 if step % 40 > 6 else 12.0 * (step % 40)
    a1 = busy_reading(1, "gpu-a", BOB)
    a1 = GpuReading(**{**{f: getattr(a1, f) for f in a1.__slots__},
                       "util_pct": 80.0 + (step * 7) % 20, "mem_used_mib": 62500.0,
                       "temp_c": 71.0, "power_w": 612.0, "processes": (BOB, BOB_2)})
    a0 = busy_reading(0, "gpu-a", TRAIN)
    a0 = GpuReading(**{**{f: getattr(a0, f) for f in a0.__slots__}, "util_pct": ramp})
    return {
        "gpu-a": [a0, a1, idle_reading(2, "gpu-a"), idle_reading(3, "gpu-a")],
        "gpu-b": [busy_reading(i, "gpu-b") if i == 0 else idle_reading(i, "gpu-b")
                  for i in range(4)],
        "sim-e": [busy_reading(0, "sim-e"), idle_reading(1, "sim-e")],
    }


def build_lab(monitor: ClusterMonitor, lab: FakeLab) -> None:
    for name, simulated in (("gpu-a", False), ("gpu-b", False), ("gpu-c", False),
                            ("gpu-d", False), ("sim-e", True)):
        monitor.add_host(spec(name, simulated))
    now = time.time()
    # Five minutes of history, one sample per 5 s, stamped in the past.
    for step in range(60):
        with mock.patch.object(cluster_mod, "time", _at(now - 300 + 5 * step)):
            for name, readings in _lab_readings(step).items():
                if step == 0:
                    bring_online(lab, name, readings, simulated=name == "sim-e")
                elif name != "gpu-b" or step < 55:
                    lab.sessions[name].report_sample(readings)
    lab.sessions["gpu-b"].report_state(
        HostState.STALE, "No reading for 23 s; the host answers but its agent is silent.")
    lab.sessions["gpu-c"].report_state(HostState.CONNECTING)
    lab.sessions["gpu-c"].report_state(
        HostState.HOSTKEY_UNKNOWN, "gpu-c.lab offered an ssh-ed25519 key Labdeck has not "
        "seen before.")
    lab.sessions["gpu-d"].report_state(HostState.HOSTKEY_CHANGED)


def render(out_dir: Path) -> list[Path]:
    app = create_application()
    lab = FakeLab()
    monitor = ClusterMonitor(lab)
    window = MainWindow(monitor)
    build_lab(monitor, lab)
    written = []
    try:
        for width, height in SIZES:
            window.resize(width, height)
            window.show()
            # Deliver the bridge's queued events, then paint them (the timer would, later).
            app.processEvents()
            window.cluster_view.refresh()
            app.processEvents()
            if len(window.cluster_view.tiles()) != TILES:
                raise RuntimeError(f"expected {TILES} tiles, "
                                   f"got {len(window.cluster_view.tiles())}")
            path = out_dir / f"cluster-{width}x{height}.png"
            out_dir.mkdir(parents=True, exist_ok=True)
            window.grab().save(str(path))
            written.append(path)
    finally:
        window.bridge.detach()
        window.cluster_view.stop()
        monitor.stop()
        window.hide()
        window.deleteLater()
        QApplication.processEvents()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("artifacts/screenshots")
    for p in render(target):
        print(p)
