"""Capture end to end on real sshd hosts: a job that logs through the labdeck client, a
TensorBoard event file and its console goes queue → dispatch → run → ingest, and what the
store holds is exactly what the job wrote — across a frozen host (the connection dropped
and re-made while the job writes on) and across an app restart while the job ends.

The app runs in this process (monitor, dispatcher, ingestor over real sessions), so a
restart is "stop them all, start fresh ones on the same LABDECK_HOME" and its memory can
be measured (tests/harness/capture_app.py). The job (capture_job.py) writes its ground
truth into its run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.metrics.ingest import IngestOptions
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from ssh_backend.states import HostState
from tests.conftest import Lab
from tests.harness.capture_app import INGEST, CaptureApp, norm, submit_job
from tests.harness.labapp import LabApp, run_dirs
from tests.harness.sshd import SshdHost

pytestmark = [pytest.mark.sshd]

JOB = Path(__file__).with_name("capture_job.py")
METRIC_PATTERNS = "metric_patterns:\n  - val_score: 'validation score=(?P<value>\\S+)'\n"


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Callable[..., tuple[LabApp, CaptureApp]]]:
    made: list[tuple[LabApp, CaptureApp]] = []

    def make(host: SshdHost, **kw: Any) -> tuple[LabApp, CaptureApp]:
        labapp = LabApp(tmp_path, [host])
        app = CaptureApp(labapp, monkeypatch, **kw)
        made.append((labapp, app))
        return labapp, app

    yield make
    for labapp, app in made:
        app.close()
        labapp.close()


def submit(labapp: LabApp, tmp_path: Path, tag: str, steps: int, big_mb: int = 0) -> str:
    args = [tag, str(steps)] + ([str(big_mb)] if big_mb else [])
    return submit_job(labapp, tmp_path / f"job-{tag}", "capture", JOB, args, METRIC_PATTERNS)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def stored_count(app: CaptureApp, key: str, series: str) -> int:
    assert app.services is not None
    return next((s.count for s in app.services.ingestor.metricstore.series(key)
                 if s.name == series), 0)


def check_capture(app: CaptureApp, host: SshdHost, run_id: str) -> dict[str, Any]:
    """The stored console and points are exactly what the job wrote; returns the truth."""
    run = RunStore(app.store).get(run_id)
    assert run is not None and run.state is RunState.SUCCEEDED, run
    key = run.host_run_id
    folder = run_dirs(host)[key]
    truth = json.loads((folder / "truth.json").read_text())
    assert app.services is not None
    ms = app.services.ingestor.metricstore
    digest = hashlib.sha256()
    size = 0
    while chunk := ms.log_bytes(key, size, size + 4 * 1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    on_host = (folder / "output.log").read_bytes()
    assert size == len(on_host)
    assert digest.hexdigest() == hashlib.sha256(on_host).hexdigest()

    def stored(series: str, with_wall: bool = False) -> list[list[Any]]:
        pts = ms.points(key, series)
        steps = [None if s != s else int(s) for s in pts.step.tolist()]
        rows = [[series, s, norm(v)] for s, v in zip(steps, pts.value.tolist(), strict=True)]
        if with_wall:
            for row, wall in zip(rows, pts.wall.tolist(), strict=True):
                row.append(wall)
        return rows

    # TensorBoard's convention: a tag in a run folder (tb/train/) is series "train/tag".
    expected_series = {"loss", "opt/lr", "train/tb_acc", "train_loss", "eval_loss",
                       "val_score"}
    if any(p[0] == "big_metric" for p in truth["console"]):
        expected_series.add("big_metric")
    assert {s.name for s in ms.series(key)} == expected_series
    for source in ("client", "console"):
        for series in {p[0] for p in truth[source]}:
            want = [[s, t, norm(v)] for s, t, v in truth[source] if s == series]
            assert stored(series) == want, (source, series)
    want_tb = [["train/" + s, t, norm(v), w] for s, t, v, w in truth["tb"]]
    assert stored("train/tb_acc", with_wall=True) == want_tb
    params = ms.params(key)
    assert json.dumps(params).count("0.001") >= 1 and "3" in json.dumps(params), params
    return truth


@pytest.mark.timeout(90)
def test_capture_survives_a_frozen_host_and_a_dropped_connection(
    tmp_path: Path, lab: Lab, make_app: Callable[..., tuple[LabApp, CaptureApp]]
) -> None:
    host = lab.hosts[0]
    labapp, app = make_app(host)
    run_id = submit(labapp, tmp_path, "freeze", steps=40)
    app.start()
    wait(lambda: stored_count(app, labapp.run(run_id).host_run_id, "train_loss") >= 10,
         40, "the first half to be stored")
    seen = len(app.states)
    host.freeze()  # the host hangs: the app drops the connection and retries meanwhile
    try:
        (host.home / "go-freeze").touch()  # the job writes its second half meanwhile
        wait(lambda: any(s is not HostState.ONLINE for s in app.states[seen:]), 20,
             "the app to give up on the frozen connection")
        time.sleep(1.0)
    finally:
        host.thaw()
    wait(lambda: app.states[-1] is HostState.ONLINE, 30, "a new connection")
    wait(lambda: labapp.run(run_id).state is RunState.SUCCEEDED, 40, "the run to finish")
    assert app.services is not None
    key = labapp.run(run_id).host_run_id
    wait(lambda: app.services is not None and app.services.ingestor.drained(key), 30,
         "the run's files to be drained")
    check_capture(app, host, run_id)


@pytest.mark.timeout(90)
def test_capture_survives_an_app_restart_while_the_run_ends(
    tmp_path: Path, lab: Lab, make_app: Callable[..., tuple[LabApp, CaptureApp]]
) -> None:
    host = lab.hosts[1]
    labapp, app = make_app(host)
    run_id = submit(labapp, tmp_path, "restart", steps=30)
    app.start()
    key = ""

    def halfway() -> bool:
        nonlocal key
        key = labapp.run(run_id).host_run_id
        return stored_count(app, key, "train_loss") >= 15

    wait(halfway, 40, "the first half to be stored")
    assert app.services is not None
    ms = app.services.ingestor.metricstore
    wait(lambda: ms.log_bytes(key, max(0, ms.log_size(key) - 9)) == b"step 15 |", 20,
         "the unfinished line to be stored")
    app.stop()  # closed with an unfinished console line stored
    (host.home / "go-restart").touch()
    wait(lambda: (run_dirs(host)[key] / "exit_code").exists(), 30, "the job to end")
    app.start()  # a fresh monitor, dispatcher and ingestor on the same store
    wait(lambda: labapp.run(run_id).state is RunState.SUCCEEDED, 40, "reconcile")
    wait(lambda: app.services is not None and app.services.ingestor.drained(key), 30,
         "the run's files to be drained")
    check_capture(app, host, run_id)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@pytest.mark.timeout(90)
def test_a_large_fast_log_streams_through_in_bounded_memory(
    tmp_path: Path, lab: Lab, make_app: Callable[..., tuple[LabApp, CaptureApp]]
) -> None:
    """64 MB written as fast as the job can; the 1 GB case is tests/bench (manual)."""
    host = lab.hosts[2]
    small_queue = IngestOptions(refresh_s=0.3, max_pending_bytes=4 * 1024 * 1024,
                                batch_bytes=2 * 1024 * 1024, watch=INGEST.watch)
    labapp, app = make_app(host, ingest=small_queue)
    (host.home / "go-big").touch()
    run_id = submit(labapp, tmp_path, "big", steps=12, big_mb=64)
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak RSS count here
    before = peak_rss_mib()
    app.start()
    wait(lambda: labapp.run(run_id).state is RunState.SUCCEEDED, 60, "the run to finish")
    key = labapp.run(run_id).host_run_id
    wait(lambda: app.services is not None and app.services.ingestor.drained(key), 60,
         "the run's files to be drained")
    grown = peak_rss_mib() - before
    truth = check_capture(app, host, run_id)
    assert len([p for p in truth["console"] if p[0] == "big_metric"]) == 64
    print(f"peak RSS grew by {grown:.1f} MiB while 64 MiB streamed through")
    assert grown < 48, f"peak RSS grew by {grown:.0f} MiB while 64 MiB streamed through"


@pytest.mark.timeout(90)
def test_logs_follow_prints_the_console_exactly_and_ctrl_c_exits_130(
    tmp_path: Path, lab: Lab, make_app: Callable[..., tuple[LabApp, CaptureApp]]
) -> None:
    """``labdeck logs -f`` tails the run itself (a second ingestor on the same store,
    beside the app's): its output is the run's console byte for byte, it exits 0 once
    the run ended, and the store still holds every point exactly once."""
    host = lab.hosts[0]
    labapp, app = make_app(host)
    run_id = submit(labapp, tmp_path, "follow", steps=20)
    app.start()
    wait(lambda: labapp.run(run_id).state is RunState.RUNNING, 40, "the run to start")

    def follow() -> subprocess.Popen[bytes]:
        return labapp.popen("logs", "-f", run_id,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    follower, quitter = follow(), follow()
    try:
        key = labapp.run(run_id).host_run_id
        log = run_dirs(host)[key] / "output.log"
        wait(lambda: log.exists() and log.stat().st_size > 1000, 20, "some output")
        # Interrupt only once it is following: its first console bytes say so (a signal
        # during start-up would test the interpreter's imports, not labdeck).
        assert quitter.stdout is not None
        ready, _, _ = select.select([quitter.stdout], [], [], 30)
        assert ready, "labdeck logs -f printed nothing within 30 s"
        assert os.read(quitter.stdout.fileno(), 65536)
        quitter.send_signal(signal.SIGINT)
        _out, err = quitter.communicate(timeout=20)
        assert quitter.returncode == 130, err
        assert err.decode().strip().endswith("labdeck: interrupted"), err
        (host.home / "go-follow").touch()
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert out == log.read_bytes()
    finally:
        for proc in (follower, quitter):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wait(lambda: labapp.run(run_id).state is RunState.SUCCEEDED, 30, "the run to finish")
    wait(lambda: app.services is not None and app.services.ingestor.drained(key), 30,
         "the app to drain the run")
    check_capture(app, host, run_id)
