"""The run window live over a real sshd host: a job writing through the labdeck client, a
TensorBoard event file and its console shows each source's curve growing in the open
window — through a frozen host (the connection dropped and re-made) and through an app
restart (services stopped and the window closed, fresh ones opened on the same
LABDECK_HOME) — and at the end the drawn raw curves and the store both hold exactly what
the job wrote.

The job (live_capture_job.py) waits at gate steps for a file the test touches, so each
phase starts from a known point; between gates it writes a step every DELAY seconds.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.ui.common.context import RunContext
from app.ui.run_window import window as run_window
from app.ui.run_window.window import RunWindow, open_run_window
from ssh_backend.states import HostState
from tests.conftest import Lab
from tests.harness.capture_app import CaptureApp, norm, submit_job
from tests.harness.labapp import LabApp, run_dirs

pytestmark = [pytest.mark.gui, pytest.mark.sshd, pytest.mark.timeout(120)]

JOB = Path(__file__).with_name("live_capture_job.py")
STEPS, DELAY = 120, 0.1
OPEN, FREEZE, RESTART, LAST = 10, 40, 70, 100  # the job's gate steps
# One series of each source; the job writes one point per step to each.
SHOWN = {"client": "loss", "tb": "train/tb_acc", "console": "train_loss"}


def expected_at(gate: int) -> dict[str, int]:
    """Points per shown series while the job waits at ``gate``: the client and the event
    file have that step's point, the console line is still unfinished."""
    return {"loss": gate + 1, "train/tb_acc": gate + 1, "train_loss": gate}


class FrameLog:
    """What each frame the window's curve panel draws holds: per shown series, its
    (raw, smoothed) PlotDataItems and the number of points handed to the raw curve."""

    def __init__(self, window: RunWindow, key: str) -> None:
        self.window, self.key = window, key
        self.frames: list[dict[str, tuple[Any, Any, int]]] = []
        window.curves.frame_drawn.connect(self._on_frame_drawn)

    def _on_frame_drawn(self) -> None:
        seen = {}
        for series in SHOWN.values():
            items = self.window.curves.items(self.key, series)
            if items is not None:
                x, _y = items[0].getOriginalDataset()
                seen[series] = (items[0], items[1], 0 if x is None else len(x))
        self.frames.append(seen)

    def counts(self) -> dict[str, int]:
        last = self.frames[-1] if self.frames else {}
        return {series: last[series][2] if series in last else 0 for series in SHOWN.values()}

    def reached(self, want: dict[str, int]) -> bool:
        return self.counts() == want

    def check_grew(self, since: int, what: str, min_steps: int) -> None:
        """From frame ``since`` on, every shown curve kept its PlotDataItems, its point
        count never went down, and it went up at least ``min_steps`` times."""
        frames = [f for f in self.frames[since:] if set(f) == set(SHOWN.values())]
        assert frames, f"{what}: no frame drawn"
        for series in SHOWN.values():
            raw0, smooth0, _ = frames[0][series]
            counts = []
            for frame in frames:
                raw, smooth, count = frame[series]
                assert raw is raw0 and smooth is smooth0, f"{what}: {series} curve recreated"
                counts.append(count)
            assert counts == sorted(counts), f"{what}: {series} shrank: {counts}"
            rises = sum(1 for a, b in itertools.pairwise(counts) if b > a)
            assert rises >= min_steps, f"{what}: {series} grew {rises} times: {counts}"
            print(f"{what}: {series} {counts}")


@pytest.fixture
def live(qtbot: Any, tmp_path: Path, lab: Lab, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[LabApp, CaptureApp, str]]:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # no ssh-agent of the tester's
    host = lab.hosts[0]
    labapp = LabApp(tmp_path, [host])
    app = CaptureApp(labapp, monkeypatch)
    tag = f"live{uuid.uuid4().hex[:8]}"
    try:
        yield labapp, app, tag
    finally:
        for window in list(run_window._open.values()):
            window.close()
        for gate in (OPEN, FREEZE, RESTART, LAST):  # a failed test must not leave it waiting
            (host.home / f"go-{tag}-{gate}").touch()
        host.thaw()
        app.close()
        labapp.close()


def submit(labapp: LabApp, tmp_path: Path, tag: str) -> str:
    args = [tag, str(STEPS), str(DELAY)] + [str(g) for g in (OPEN, FREEZE, RESTART, LAST)]
    return submit_job(labapp, tmp_path / "job", "live", JOB, args)


def open_window(qtbot: Any, app: CaptureApp, run_id: str, key: str) -> tuple[RunWindow, FrameLog]:
    services = app.services
    assert services is not None
    context = RunContext(RunStore(app.store), services.ingestor.metricstore,
                         services.monitor, services.bus)
    window = open_run_window(run_id, context)
    window.resize(1280, 800)
    frames = FrameLog(window, key)
    qtbot.waitUntil(lambda: window.run is not None, timeout=5_000)
    assert window.run.host_run_id == key
    return window, frames


def gate_open(labapp: LabApp, tag: str, step: int) -> None:
    (next(iter(labapp.hosts.values())).home / f"go-{tag}-{step}").touch()


def same(a: list[Any], b: list[Any]) -> bool:
    return [norm(v) for v in a] == [norm(v) for v in b]


def test_run_window_curves_grow_live_across_a_frozen_host_and_an_app_restart(
    qtbot: Any, tmp_path: Path, lab: Lab, live: tuple[LabApp, CaptureApp, str]
) -> None:
    labapp, app, tag = live
    host = lab.hosts[0]
    run_id = submit(labapp, tmp_path, tag)
    app.start()
    qtbot.waitUntil(lambda: labapp.run(run_id).state is RunState.RUNNING, timeout=30_000)
    key = labapp.run(run_id).host_run_id

    # -- 1. opened while the run runs: each source's curve appears, then grows ----------
    window, frames = open_window(qtbot, app, run_id, key)
    qtbot.waitUntil(lambda: frames.reached(expected_at(OPEN)), timeout=20_000)
    since = len(frames.frames) - 1
    gate_open(labapp, tag, OPEN)
    qtbot.waitUntil(lambda: frames.reached(expected_at(FREEZE)), timeout=20_000)
    frames.check_grew(since, "while the job runs", min_steps=3)

    # -- 2. the host freezes: the app drops the connection, the window keeps working ----
    seen_states = len(app.states)
    ticks: list[float] = []
    pulse = QTimer(interval=50)
    pulse.timeout.connect(lambda: ticks.append(time.monotonic()))
    pulse.start()
    clock_before = window.time_label.text()
    host.freeze()
    try:
        gate_open(labapp, tag, FREEZE)  # the job writes on while the host is unreachable
        qtbot.waitUntil(lambda: any(s is not HostState.ONLINE
                                    for s in app.states[seen_states:]), timeout=20_000)
        # The job is not under sshd: it writes up to its next gate while the host hangs.
        log = run_dirs(host)[key] / "output.log"
        qtbot.waitUntil(lambda: log.read_bytes().endswith(f"step {RESTART} |".encode()),
                        timeout=20_000)
        qtbot.wait(1_000)
        assert frames.counts() == expected_at(FREEZE)  # nothing can have come through
    finally:
        host.thaw()
    pulse.stop()
    gaps = np.diff(ticks)
    assert len(ticks) > 20 and gaps.max() < 1.5, f"GUI stalled {gaps.max():.2f} s in the freeze"
    assert window.time_label.text() != clock_before, "the window's clock stopped in the freeze"
    assert window.run is not None and window.run.state is RunState.RUNNING
    since = len(frames.frames) - 1
    qtbot.waitUntil(lambda: app.states[-1] is HostState.ONLINE, timeout=30_000)
    qtbot.waitUntil(lambda: frames.reached(expected_at(RESTART)), timeout=30_000)
    frames.check_grew(since, "after the host came back", min_steps=1)

    # -- 3. app restart mid-run: services stopped, window closed; fresh ones ------------
    assert app.services is not None
    ms = app.services.ingestor.metricstore
    qtbot.waitUntil(lambda: ms.log_bytes(key, max(0, ms.log_size(key) - 9)) ==
                    f"step {RESTART} |".encode()[:9], timeout=10_000)
    before = frames.counts()
    app.stop()
    window.close()
    qtbot.waitUntil(lambda: run_id not in run_window._open, timeout=5_000)
    gate_open(labapp, tag, RESTART)  # the job writes on while the app is away
    app.start()
    window, frames = open_window(qtbot, app, run_id, key)
    qtbot.waitUntil(lambda: len(frames.frames) > 0 and all(frames.counts().values()),
                    timeout=30_000)
    first_back = frames.counts()
    assert all(first_back[s] >= before[s] for s in before), (before, first_back)
    first_drawn = {s: window.curves.items(key, s)[0].getOriginalDataset()  # type: ignore[index]
                   for s in SHOWN.values()}
    since = len(frames.frames) - 1
    qtbot.waitUntil(lambda: frames.reached(expected_at(LAST)), timeout=30_000)
    gate_open(labapp, tag, LAST)
    qtbot.waitUntil(lambda: frames.reached({s: STEPS for s in SHOWN.values()}),
                    timeout=30_000)
    frames.check_grew(since, "after the restart", min_steps=3)

    # -- 4. the end: drawn raw curves and the store equal the job's ground truth ---------
    qtbot.waitUntil(lambda: labapp.run(run_id).state is RunState.SUCCEEDED, timeout=30_000)
    qtbot.waitUntil(lambda: app.services is not None and app.services.ingestor.drained(key),
                    timeout=30_000)
    check_against_truth(qtbot, app, window, run_dirs(host)[key], key, first_drawn)
    window.close()


def check_against_truth(qtbot: Any, app: CaptureApp, window: Any, folder: Path, key: str,
                        first_drawn: dict[str, Any]) -> None:
    """The drawn raw curves and the store equal the job's ground truth (``truth.json``
    in its run folder), and the curves first drawn after the restart were its start."""
    truth = json.loads((folder / "truth.json").read_text())
    want: dict[str, tuple[list[int], list[Any], list[float] | None]] = {}
    for source in ("client", "console"):
        for name in dict.fromkeys(p[0] for p in truth[source]):
            rows = [p for p in truth[source] if p[0] == name]
            want[name] = ([p[1] for p in rows], [p[2] for p in rows], None)
    want["train/tb_acc"] = ([p[1] for p in truth["tb"]], [p[2] for p in truth["tb"]],
                            [p[3] for p in truth["tb"]])
    assert set(want) == {"loss", "opt/lr", "train/tb_acc", "train_loss"}
    assert all(len(steps) == STEPS for steps, _v, _w in want.values())

    curves = window.curves
    curves.reset_zoom()  # fully zoomed out: x follows all the data
    curves.notify_data()
    qtbot.waitUntil(curves.settled, timeout=10_000)
    assert sorted(curves.series_names()) == sorted(want)
    stored = {s.name for s in ms_of(app).series(key)}
    assert stored == set(want), stored
    for name, (steps, values, walls) in want.items():
        items = curves.items(key, name)
        assert items is not None, name
        x, y = items[0].getOriginalDataset()
        assert x is not None and y is not None
        assert x.tolist() == steps, name
        assert same(y.tolist(), values), (name, y.tolist(), values)
        shown_x, _shown_y = items[0].getData()
        assert len(shown_x) == STEPS, name  # pyqtgraph drew every point, none dropped
        frame = curves.frame(key, name)
        assert frame is not None and frame.count == STEPS
        points = ms_of(app).points(key, name)
        assert [int(s) for s in points.step.tolist()] == steps, name
        assert same(points.value.tolist(), values), name
        if walls is not None:
            assert points.wall.tolist() == walls, name
    for name in SHOWN.values():
        x0, y0 = first_drawn[name]
        n = len(x0)
        steps, values, _walls = want[name]
        assert x0.tolist() == steps[:n] and same(y0.tolist(), values[:n]), name


def ms_of(app: CaptureApp) -> Any:
    assert app.services is not None
    return app.services.ingestor.metricstore

