"""A full disk, for real (a small tmpfs filled to the last byte), on a host and locally.

On a host (its ``~/.labdeck/runs``): a launch is refused with a message that names the
host and says "no space left"; the run stays queued and is tried again after a backoff,
not in a loop; the host goes on being monitored; once space is freed the run starts and
succeeds, exactly once. A disk that fills while a run is running still yields the run's
exit code and says why its output may be cut short.

Locally (the tmpfs under LABDECK_HOME): ``labdeck submit`` fails with a clear sentence and
a non-zero exit code, no traceback; ``labdeck serve`` says the store is full and carries
on; after space is freed the store passes ``PRAGMA integrity_check``, the run that went on
meanwhile is recorded as succeeded, its stored console is byte for byte the host's
output.log (nothing lost or duplicated by the Ingestor), and the queue works again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.queue.hostcalls import DispatchOptions, HostCalls, Shared
from app.core.queue.runs import RunState
from app.core.store import Store, StoreFullError
from ssh_backend.hostspec import HostSpec
from tests.harness.labapp import LabApp, base_run_id, run_dirs, run_record
from tests.harness.runhost import RunHost
from tests.harness.sshd import SshdLab
from tests.harness.tmpfs import tmpfs

pytestmark = [pytest.mark.reliability, pytest.mark.sshd, pytest.mark.slow]

QUICK_JOB = "name: quick\ncommand: [python3, -c, \"print('hello from the job')\"]\n"
SCRIPT = "print('hello from the script')\n"
# About five seconds of console, a line every 50 ms.
CHATTY = "import time\\nfor i in range({n}):\\n    print('line', i, 'x' * 200)\\n" \
    "    time.sleep(0.05)\\n"


def chatty_job(path: Path, lines: int) -> Path:
    path.write_text(f"name: chatty\ncommand: [python3, -c, \"{CHATTY.format(n=lines)}\"]\n")
    return path


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Logging error" not in text, text[-3000:]


# -- the pieces, one at a time ----------------------------------------------------------
def test_runctl_refuses_a_full_disk_for_the_whole_host(tmp_path: Path) -> None:
    host = RunHost(tmp_path)
    try:
        with tmpfs(host.home / ".labdeck" / "runs") as disk:
            disk.fill()
            reply = host.launch("full-run", ["true"])
            assert reply["ok"] is False and reply["host_wide"] is True, reply
            assert reply["refused"].startswith(
                "no space left on the disk holding ~/.labdeck/runs (0.0 MiB free")
            assert not host.run_dir("full-run").exists()  # no empty folder per try
            space = host.ctl({"op": "space"})
            assert space["ok"] is False and "no space left" in space["refused"]
            disk.free()
            assert host.ctl({"op": "space"})["free_bytes"] > 16 * 1024 * 1024
            assert host.launch("full-run", ["true"])["ok"]
            assert host.wait_kind("full-run", "finished")["exit_code"] == 0
    finally:
        host.cleanup()


def test_a_host_refusing_for_its_disk_backs_off() -> None:
    shared = Shared()
    calls = HostCalls(None, None, None, shared, DispatchOptions(), print, print)  # type: ignore[arg-type]
    delays = [calls._host_refused("ws") for _ in range(7)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert shared.host_cooldown["ws"][0] > time.monotonic() + 59
    assert calls._host_refused("other") == 2.0  # per host


def test_store_on_a_full_disk_says_so_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home", size_mib=2) as disk:
        path = disk.path / "labdeck.sqlite3"
        with Store.open(path) as store:
            store.add_host(HostSpec(name="kept", hostname="127.0.0.1"))
            disk.fill()
            with pytest.raises(StoreFullError, match=r"the disk holding .*/home is full"):
                for i in range(1000):  # until the WAL's free pages are used up too
                    store.set_setting(f"key{i}", "x" * 4000)
            assert store.disk_full.startswith("the disk holding")
            disk.free()
            store.set_setting("after", 1)
            assert store.get_setting("after") == 1
            assert [spec.name for spec in store.hosts()] == ["kept"]
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


@pytest.mark.timeout(120)
def test_host_disk_full_at_launch(tmp_path: Path, sshd_lab: SshdLab) -> None:
    host = sshd_lab.add_host("diskfull-launch")
    with tmpfs(host.home / ".labdeck" / "runs") as disk:
        disk.fill()
        app = LabApp(tmp_path / "user", [host])
        try:
            (tmp_path / "job.yaml").write_text(QUICK_JOB)
            (tmp_path / "train.py").write_text(SCRIPT)
            ids = app.submit(str(tmp_path / "job.yaml")) + app.submit(str(tmp_path / "train.py"))
            serve = app.serve("--poll", "1")
            app.wait_runs(lambda runs: all("no space left" in run.reason for run in runs),
                          30, serve)
            watched = time.monotonic()
            time.sleep(8)
            runs = app.runs()
            tries = app.serve_output().count("launch refused")
            # Backoff 2, 4, 8 s: a handful of tries per run, not one every half second.
            assert 1 <= tries <= 12, app.serve_output()[-3000:]
            # A refused try keeps its attempt id and leaves no folder on the host.
            assert [run.attempt for run in runs] == [0, 0]
            assert run_dirs(host) == {}
            for run_id in ids:
                shown = app("show", run_id)
                assert shown.returncode == 0, shown.stderr
                assert "queued" in shown.stdout
                assert f"launch refused on {host.name}: no space left" in shown.stdout
                assert "free some space" in shown.stdout
            # The agent goes on monitoring the host: its GPUs are there, sampled.
            gpus = app("gpus")
            assert gpus.returncode == 0, gpus.stderr
            assert gpus.stdout.count(host.name) == 4, gpus.stdout
            disk.free()
            freed = time.monotonic()
            runs = app.wait_runs(lambda runs: all(run.state.finished for run in runs), 60, serve)
            freed_after = time.monotonic() - freed
            assert [run.state for run in runs] == [RunState.SUCCEEDED] * 2, \
                [(run.id, run.state, run.reason) for run in runs]
            assert app.stop(serve) == 0
            out = app.serve_output()
        finally:
            app.close()
        no_traceback(out)
        started = [base_run_id(name) for name, folder in run_dirs(host).items()
                   if (folder / "state.json").exists()]
        assert sorted(started) == sorted(ids)  # each ran once, none twice
        assert all(run_record(folder)["exit_code"] == 0 for folder in run_dirs(host).values()
                   if (folder / "state.json").exists())
        assert not list(disk.path.glob("**/*.tmp-*"))  # no half-written file left
    print(f"\nhost disk full: {tries} refused tries for 2 runs in {freed - watched:.0f} s "
          f"of full disk; both succeeded once, {freed_after:.1f} s after space was freed")


@pytest.mark.timeout(90)
def test_host_disk_fills_while_running(tmp_path: Path, sshd_lab: SshdLab) -> None:
    host = sshd_lab.add_host("diskfull-running")
    with tmpfs(host.home / ".labdeck" / "runs") as disk:
        app = LabApp(tmp_path / "user", [host])
        try:
            [run_id] = app.submit(str(chatty_job(tmp_path / "job.yaml", 100)))
            serve = app.serve("--poll", "1")
            app.wait_runs(lambda runs: runs[0].state is RunState.RUNNING, 30, serve)
            time.sleep(0.5)
            disk.fill()
            [run] = app.wait_runs(lambda runs: runs[0].state.finished, 30, serve)
            assert app.stop(serve) == 0
            out = app.serve_output()
        finally:
            app.close()
        no_traceback(out)
        [folder] = run_dirs(host).values()
        recorded = run_record(folder)
        # The job died of its full stdout, and the wrapper still wrote its exit code.
        assert recorded["exit_code"] not in (None, 0), recorded
        assert run.state is RunState.FAILED and run.exit_code == recorded["exit_code"]
        assert "filled up while it ran" in run.reason, run.reason
        assert run_id in run.reason or "~/.labdeck/runs/" in run.reason
    print(f"\nhost disk filled mid-run: reported as {run.state} ({run.reason})")


def stored_console(store_path: Path, key: str) -> bytes:
    with Store.open(store_path) as store:
        return MetricStore(store).log_bytes(key)


@pytest.mark.timeout(120)
def test_local_disk_full(tmp_path: Path, sshd_lab: SshdLab) -> None:
    host = sshd_lab.add_host("diskfull-local")
    user = tmp_path / "user"
    with tmpfs(user / "labdeck", size_mib=24) as disk:
        app = LabApp(user, [host])
        try:
            [first] = app.submit(str(chatty_job(tmp_path / "job.yaml", 100)))
            serve = app.serve("--poll", "1")
            app.wait_runs(lambda runs: runs[0].state is RunState.RUNNING, 30, serve)
            filled = disk.fill()
            full_at = time.monotonic()
            refused = app("submit", str(tmp_path / "job.yaml"))
            assert refused.returncode != 0
            assert f"the disk holding {app.home} is full" in refused.stderr, refused.stderr
            assert "free some space" in refused.stderr
            no_traceback(refused.stderr + refused.stdout)
            listed = app("ls")  # reading still works
            assert listed.returncode == 0 and first in listed.stdout, listed.stderr
            # The run ends on its host while nothing can be stored here.
            [folder] = run_dirs(host).values()
            deadline = time.monotonic() + 30
            while run_record(folder)["exit_code"] is None:
                assert time.monotonic() < deadline, "the run did not end on its host"
                time.sleep(0.2)
            time.sleep(2)
            assert "is full" in app.serve_output()
            disk.free()
            freed_at = time.monotonic()
            [run] = app.wait_runs(lambda runs: runs[0].state.finished, 30, serve)
            assert run.state is RunState.SUCCEEDED and run.exit_code == 0, run.reason
            host_log = (folder / "output.log").read_bytes()
            deadline = time.monotonic() + 20
            while stored_console(app.store_path, folder.name) != host_log:
                assert time.monotonic() < deadline, (
                    len(stored_console(app.store_path, folder.name)), len(host_log))
                time.sleep(0.2)
            # The queue works again.
            [second] = app.submit(str(chatty_job(tmp_path / "short.yaml", 3)))
            app.wait_runs(lambda runs: all(r.state is RunState.SUCCEEDED for r in runs),
                          30, serve)
            # serve says so once writes have gone through for a while (Store.FULL_CLEAR_S).
            deadline = time.monotonic() + 15
            while "the store takes writes again" not in app.serve_output():
                assert time.monotonic() < deadline, app.serve_output()[-2000:]
                time.sleep(0.2)
            assert app.stop(serve) == 0
            out = app.serve_output()
        finally:
            app.close()
        no_traceback(out)
        with sqlite3.connect(app.store_path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert {run.id for run in app.runs()} == {first, second}
        digest = hashlib.sha256(host_log).hexdigest()[:16]
    print(f"\nlocal disk full: {filled} filler bytes, full for {freed_at - full_at:.1f} s; "
          f"console {len(host_log)} bytes, sha256 {digest}… equal on host and in the store; "
          "integrity_check ok")
