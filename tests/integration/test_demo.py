"""The demo lab for real, time-compressed: local sessions running the real agent with the
simulated GPU backend, the other user's real process, the real dispatcher and ingestor,
and the demo's training runs as real processes. Also ``labdeck --demo --self-test``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.demo import DEMO_HOSTS, OTHER_USER, first_sweep, prepare_demo
from app.core.lab import Lab
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import Run, RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.states import HostState
from tests.harness.labcli import LabCli

SPEED = "10"  # the sweep's ~60 s runs take ~6 s, the long ones ~12 s
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
OTHER_GPUS = {(h.name, i) for h in DEMO_HOSTS for i in h.other_user_gpus}
# One series per source: the labdeck client, TensorBoard files, the console.
EXPECTED_SERIES = {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "grad_norm",
                   "loss", "acc", "epoch"}


def _pids_with_home(root: Path) -> list[int]:
    """Processes whose HOME lies under ``root``: everything the demo under test started
    (the app's HOME, and the demo hosts' own HOMEs inside its Labdeck home)."""
    needle = f"HOME={root}".encode()
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if any(v.startswith(needle) for v in env.read_bytes().split(b"\0")):
                found.append(int(env.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _kill_all(home: Path) -> list[int]:
    left = _pids_with_home(home)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_with_home(home):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    return left


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private LABDECK_HOME and HOME (the local hosts' run folders live under HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "lab"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LABDECK_DEMO_SPEED", SPEED)
    yield home
    _kill_all(tmp_path)


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"within {timeout:.0f} s: {what}")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_lab_works_around_the_other_user_and_finishes_runs(demo_env: Path) -> None:
    store = Store.open()
    lab = prepare_demo(store)
    services = Lab.open(store)
    runstore, metrics = RunStore(store), MetricStore(store)
    started = time.monotonic()
    try:
        assert sorted(h.name for h in store.hosts()) == sorted(h.name for h in DEMO_HOSTS)
        assert len(lab.queued) == len(first_sweep()) == 9
        services.start()
        monitor = services.monitor

        def alice_everywhere() -> bool:
            views = monitor.hosts()
            if len(views) != 3 or not all(
                    v.state is HostState.ONLINE and v.sample and v.simulated for v in views):
                return False
            seen = {(v.name, g.index) for v in views for g in v.sample.gpus  # type: ignore[union-attr]
                    if any(p.user == OTHER_USER and p.pid in lab.other_user_pids()
                           for p in g.processes)}
            return seen == OTHER_GPUS

        _wait(alice_everywhere, 30, "three simulated hosts online, alice on exactly her GPUs")
        sizes = {v.name: len(v.sample.gpus) for v in monitor.hosts()}  # type: ignore[union-attr]
        assert sizes == {h.name: h.gpus for h in DEMO_HOSTS}
        online_s = time.monotonic() - started

        first_done: list[float] = []

        def all_finished() -> bool:
            runs = runstore.list_runs()
            if not first_done and any(r.state is RunState.SUCCEEDED for r in runs):
                first_done.append(time.monotonic() - started)
            return all(r.state.finished for r in runs)

        _wait(all_finished, 60, "every demo run finished")
        all_done_s = time.monotonic() - started
        runs = runstore.list_runs()
        assert [r.state for r in runs] == [RunState.SUCCEEDED] * 9, [r.reason for r in runs]
        assert all(r.exit_code == 0 for r in runs)
        # Dispatched onto free GPUs only: never alice's, never two runs on a GPU at once.
        held = [((r.host, g), r.started_at, r.ended_at) for r in runs for g in r.gpus]
        assert not {gpu for gpu, _s, _e in held} & OTHER_GPUS
        for i, (gpu, s1, e1) in enumerate(held):
            for gpu2, s2, e2 in held[i + 1:]:
                assert gpu != gpu2 or e1 <= s2 or e2 <= s1, f"{gpu} held twice at once"
        wide = next(r for r in runs if r.name == "wide-4gpu")
        assert len(wide.gpus) == 4 and len(set(wide.gpus)) == 4

        def curves_stored() -> bool:
            return all(EXPECTED_SERIES <= {s.name for s in metrics.series(r.id)}
                       for r in runs)

        _wait(curves_stored, 15, "every run's curves from the client, TensorBoard and console")

        def steps_of(run: Run) -> int:
            spec_args = run.spec["argv"]
            return (int(spec_args[spec_args.index("--epochs") + 1])
                    * int(spec_args[spec_args.index("--steps-per-epoch") + 1]))

        def counts_of(run: Run) -> dict[str, int]:
            return {s.name: s.count for s in metrics.series(run.id)}

        # The last chunks of a finished run may still be on their way (the ingestor drains
        # finished runs): wait for them, then require exact counts.
        _wait(lambda: all(counts_of(r).get("lr") == steps_of(r) for r in runs), 30,
              "every run's last points")
        for run in runs:
            steps = steps_of(run)
            counts = counts_of(run)
            assert counts["train/loss"] == counts["lr"] == steps
            assert metrics.params(run.id)["lr"] == run.params["lr"]
            assert b"finished after" in metrics.log_bytes(run.id)
        print(f"\ndemo at speed {SPEED}: hosts online {online_s:.1f} s, first run finished "
              f"{first_done[0]:.1f} s, all 9 finished {all_done_s:.1f} s")
    finally:
        alice = list(lab.other_user)
        services.stop()
        lab.stop()
    assert len(alice) == 2 and all(p.poll() is not None for p in alice)
    # A second start registers nothing new and queues nothing, but starts alice again.
    again = prepare_demo(store)
    try:
        assert again.queued == [] and len(store.hosts()) == 3 and len(runstore.list_runs()) == 9
        assert len(again.other_user_pids()) == 2
    finally:
        again.stop()
        store.close()
    time.sleep(1.0)  # the other user's processes reaped; the agents were stopped above
    assert _pids_with_home(demo_env.parent) == [], "the demo left processes behind"
    # The simulated workstations kept their run folders in the demo's own home, never in
    # the user's real ~/.labdeck.
    assert not (demo_env / ".labdeck" / "runs").exists()
    assert any((demo_env.parent / "lab" / "hosts").glob("*/.labdeck/runs/*/exit_code"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_labdeck_demo_self_test_renders_the_real_demo(tmp_path: Path) -> None:
    shot = tmp_path / "demo.png"
    labdeck = LabCli(tmp_path, home=tmp_path / "lab", user_home=tmp_path / "home",
                     inherit_env=True, timeout=100,
                     env={"LABDECK_DEMO_SPEED": SPEED, "QT_QPA_PLATFORM": "offscreen"})
    try:
        done = labdeck("--demo", "--self-test", "--screenshot", str(shot))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "demo lab after" in done.stdout and "runs running" in done.stdout
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "demo-main.png").write_bytes(shot.read_bytes())
        # Its own home: the demo's store is there, the user's real data dir was not used.
        assert (tmp_path / "lab" / "labdeck.sqlite3").exists()
        # The other user's processes ended with the self-test; the runs go on (like runs
        # after the window closes) and are ended here.
        time.sleep(1.0)
        assert [p for p in _pids_with_home(tmp_path) if b"other_user_job" in _cmdline(p)] == []
    finally:
        _kill_all(tmp_path)
