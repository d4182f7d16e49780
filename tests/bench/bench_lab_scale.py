"""Lab scale: 32 hosts × 8 GPUs sampled at 1 Hz, through the real window offscreen.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_lab_scale.py [mode]

The real ClusterMonitor, EventBridge and MainWindow (with the runs page and the other
features ``labdeck`` installs, over a store of 100k runs) receive real ``Sample`` objects
from in-process sessions (``app.ui.cluster.preview_sessions.PreviewSession``: recorded H100 values,
one sample per host per second, each stamped when emitted). Measured over a window of
wall time once the runs table has loaded:

- GUI thread busy: CPU time of the GUI thread (``time.thread_time``) ÷ wall time;
- sample-to-screen: from a sample's emission to the first repaint of a GPU tile's
  sparkline showing it (only tiles on screen repaint; 95th percentile);
- RSS of the whole process at the end (100k runs + 32 hosts).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer
from PySide6.QtWidgets import QApplication

from app.core.hosts.cluster import ClusterMonitor
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runstore import RunStore
from app.ui.cluster.preview_sessions import PreviewGpu, PreviewSession
from app.ui.cluster.trust_prompter import TrustPrompter
from app.ui.common.context import AppContext
from app.ui.shell.app import create_application
from app.ui.shell.features import install_features
from app.ui.shell.main_window import HostActions, MainWindow
from ssh_backend.events import SessionListener
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import Sample
from tests.bench.bench_runs_table import build_store, spin_until
from tests.bench.benchlib import figure, percentile, pick, rss_mib

GPUS = 8


class EmitStamps:
    """Wraps a session's listener: remembers when each (host, seq) sample was emitted."""

    def __init__(self, inner: SessionListener, stamps: dict[tuple[str, int], float]) -> None:
        self._inner = inner
        self._stamps = stamps

    def on_state(self, host: str, state: Any, detail: str) -> None:
        self._inner.on_state(host, state, detail)

    def on_hello(self, host: str, hello: Any) -> None:
        self._inner.on_hello(host, hello)

    def on_sample(self, host: str, sample: Sample) -> None:
        self._stamps[(host, sample.seq)] = time.perf_counter()
        self._inner.on_sample(host, sample)

    def on_tail(self, host: str, chunk: Any) -> None:
        self._inner.on_tail(host, chunk)


class PaintProbe(QObject):
    """Records, per (host, seq), the delay from emission to the first sparkline repaint."""

    def __init__(self, stamps: dict[tuple[str, int], float]) -> None:
        super().__init__()
        self._stamps = stamps
        self._owners: dict[int, Any] = {}  # id(sparkline) -> (host name, its HostGroup)
        self.delays: dict[tuple[str, int], float] = {}
        self.recording = False

    def watch(self, window: MainWindow) -> None:
        for name, group in window.cluster_view.groups.items():
            for tile in group.tiles.values():
                if id(tile.load_spark) not in self._owners:
                    self._owners[id(tile.load_spark)] = (name, group)
                    tile.load_spark.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.recording and event.type() == QEvent.Type.Paint:
            name, group = self._owners[id(watched)]
            # The seq the host's tiles were last updated with (HostGroup keeps it).
            key = (name, group._last_sample_seq)
            if key not in self.delays and key in self._stamps:
                self.delays[key] = time.perf_counter() - self._stamps[key]
        return False


def lab_specs(hosts: int) -> dict[str, tuple[PreviewGpu, ...]]:
    """Hosts with a mix of idle GPUs and GPUs running someone's job."""
    lab = {}
    for h in range(hosts):
        lab[f"ws{h:02d}"] = tuple(
            PreviewGpu(f"user{(h + i) % 7}", f"python train.py --run {h}-{i}", 1000 + i)
            if (h + i) % 3 else PreviewGpu() for i in range(GPUS))
    return lab


def wait(app: QApplication, seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def measure(mode: str) -> list[dict[str, Any]]:
    hosts = pick(mode, 4, 32, 32)
    runs = pick(mode, 2_000, 100_000, 100_000)
    seconds = pick(mode, 3.0, 20.0, 60.0)
    app = create_application([])
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-scale-") as tmp:
        os.environ["LABDECK_HOME"] = tmp
        store = build_store(runs)
        lab = lab_specs(hosts)
        stamps: dict[tuple[str, int], float] = {}

        def factory(spec: HostSpec, listener: SessionListener) -> PreviewSession:
            return PreviewSession(spec, EmitStamps(listener, stamps), lab[spec.name])

        monitor = ClusterMonitor(factory)
        monitor.set_hosts(HostSpec(name=name, hostname=f"{name}.lab.example",
                                   agent=AgentOptions(interval_s=1.0, backend="sim",
                                                      sim_gpus=GPUS)) for name in lab)
        window = MainWindow(monitor, None, TrustPrompter(), HostActions())
        bridge = window.bridge
        ctx = AppContext(store, RunStore(store), MetricStore(store))
        features = install_features(window, ctx)
        window.resize(1280, 800)
        window.show()
        stages = {"window": rss_mib()}
        monitor.start()
        # The runs table loads its 100k ids first (what the memory figure includes).
        window.tabs.setCurrentWidget(features.runs)
        spin_until(features.runs.model.is_loaded, 60)
        stages["runs loaded"] = rss_mib()
        window.tabs.setCurrentWidget(window.cluster_view)
        spin_until(lambda: sum(len(g.tiles) for g in window.cluster_view.groups.values())
                   >= hosts * GPUS, 30)
        wait(app, 1.5)
        stages["tiles built"] = rss_mib()
        probe = PaintProbe(stamps)
        probe.watch(window)
        probe.recording = True
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        wait(app, seconds)
        busy = (time.thread_time() - cpu0) / (time.perf_counter() - wall0) * 100
        probe.recording = False
        rss = rss_mib()
        shown = sorted(probe.delays.values())
        emitted = sum(1 for _ in stamps)
        features.close()
        monitor.stop()
        bridge.detach()
        window.cluster_view.stop()
        window.hide()
        store.close()
    if not shown:
        raise RuntimeError("no tile repainted a sample")
    note = (f"{hosts} hosts × {GPUS} GPUs at 1 Hz for {seconds:g} s; {len(shown)} samples "
            f"repainted on screen (of {emitted} emitted; only visible tiles paint); "
            f"median {percentile(shown, 0.5) * 1e3:.0f} ms")
    return [
        figure("lab scale: GUI thread busy", busy, "%", target="< 10 %", max_value=10,
               note=f"{hosts} hosts × {GPUS} GPUs at 1 Hz, {runs:,} runs in the store"),
        figure("lab scale: sample-to-screen p95", percentile(shown, 0.95) * 1e3, "ms",
               target="< 250 ms", max_value=250, note=note),
        figure("memory: 100k runs + 32 hosts (RSS)", rss, "MiB", target="< 300 MB",
               max_value=300 * 1e6 / 2**20,
               note=f"whole process after {seconds:g} s, {runs:,} runs loaded, {hosts} hosts; "
                    "RSS on the way: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in stages.items())),
    ]


if __name__ == "__main__":
    for row in measure(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)
