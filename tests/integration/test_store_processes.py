"""The store shared by processes, as the window, ``labdeck serve`` and the CLI share it:
two writers at once, three claimers racing for the same runs, a writer killed with
SIGKILL mid-ingest again and again. Everything in one process is tests/unit/test_store.py,
test_runstore.py and test_metricstore.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.jobs.jobspec import JobSpec
from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.harness.labcli import REPO
from tests.harness.run_rows import integrity_ok

LOG = "output.log"
JSONL = "metrics.jsonl"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "labdeck.sqlite3"


def spec(name: str) -> dict[str, Any]:
    return JobSpec(name=name, argv=("true",)).to_dict()


def test_two_processes_writing_at_once_do_not_corrupt(store: Store, home: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from app.core.store import Store
        from ssh_backend.hostspec import HostSpec
        prefix = sys.argv[1]
        with Store.open() as s:
            for i in range(150):
                s.add_host(HostSpec(name=f"{prefix}{i}", hostname="h", port=22))
                s.set_setting("counter", i)
                if i % 3 == 0:
                    s.remove_host(f"{prefix}{i}")
        """
    )
    env = {"LABDECK_HOME": str(home), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, p], cwd=REPO, env=env,
                         stderr=subprocess.PIPE, text=True)
        for p in ("p1-", "p2-")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    names = {s.name for s in store.hosts()}
    assert len(names) == 200  # 2 * (150 - 50 removed)
    assert "p1-1" in names and "p2-149" in names and "p1-0" not in names
    assert store.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


CLAIMER = textwrap.dedent(
    """
    import json, random, sys, time
    from pathlib import Path
    from app.core.queue.runstore import RunStore
    from app.core.store import Store

    path, go, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = Store.open(path)
    runs = RunStore(store)
    ids = json.loads(sys.argv[4])
    ready = go.with_name("ready-" + me)
    ready.touch()
    random.seed(me)
    random.shuffle(ids)
    while not go.exists():
        time.sleep(0.005)
    won, lost = [], 0
    for rid in ids:
        if runs.claim(rid, "host-" + rid, [0], ["GPU-" + me]):
            won.append(rid)
        else:
            lost += 1
    store.close()
    print(json.dumps({"won": won, "lost": lost}))
    """
)


@pytest.mark.slow
def test_processes_racing_for_the_same_claims_each_run_goes_to_exactly_one(
    path: Path, tmp_path: Path
) -> None:
    with Store.open(path) as store:
        ids = RunStore(store).submit([spec(f"p{i}") for i in range(200)], user="u")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(path), str(go), f"p{k}", json.dumps(ids)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for k in range(3)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-p{k}").exists() for k in range(3)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()  # all three are imported and connected: start them together
    results, lost = [], 0
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        reply = json.loads(out)
        results.append(reply["won"])
        lost += reply["lost"]
    claimed = [rid for won in results for rid in won]
    assert sorted(claimed) == sorted(ids)  # each exactly once: no loss, no duplicate
    # Every other attempt lost cleanly (False, no "database is locked" error).
    assert lost == 2 * len(ids)
    with Store.open(path) as store:
        runs = RunStore(store)
        owners = {}
        for k, won in enumerate(results):
            for rid in won:
                owners[rid] = f"GPU-p{k}"
        for rid in ids:
            run = runs.get(rid)
            assert run is not None and run.state is RunState.LAUNCHING and run.host == f"host-{rid}"
            assert run.gpu_uuids == (owners[rid],)  # the winner's placement was stored


WRITER = textwrap.dedent("""
    import time
    from app.core.metrics.metricstore import MetricStore
    from app.core.store import Store
    from ssh_backend.protocol import MetricPoint, TailChunk
    RUNS, S, P = ("ka", "kb", "kc"), 7001, 1500
    def console(run, a, b):
        text = b"".join(b"%s %08d\\n" % (run.encode(), k) for k in range(a // 12, b // 12 + 1))
        return text[a % 12 : a % 12 + b - a]
    ms = MetricStore(Store.open())
    # Resume where the store says, as the app does after a crash.
    i = ms.offsets("ka").get("output.log", 0) // S
    while True:
        batch = []
        for run in RUNS:
            batch.append(("h", TailChunk(run, "output.log", 1, i * S, (i + 1) * S,
                                         data=console(run, i * S, (i + 1) * S))))
            points = tuple(MetricPoint(name, j, float(j), j * sign)
                           for j in range(i * P, (i + 1) * P)
                           for name, sign in (("loss", 0.5), ("acc", -1.0)))
            batch.append(("h", TailChunk(run, "metrics.jsonl", 2, i * 1000, (i + 1) * 1000,
                                         points=points)))
        ms.ingest(batch)
        i += 1
        print(i, time.monotonic(), flush=True)
""")


def check_consistent(path: Path) -> int:
    """Offsets match the stored data exactly for every run; returns the chunks committed."""
    with Store.open(path) as s:
        assert integrity_ok(s)
        ms = MetricStore(s)
        committed = set()
        for run in ("ka", "kb", "kc"):
            offsets = ms.offsets(run)
            size = ms.log_size(run)
            assert offsets[LOG] == size and size % 7001 == 0
            expected = b"".join(b"%s %08d\n" % (run.encode(), k) for k in range(size // 12 + 1))
            assert ms.log_bytes(run, 0, size) == expected[:size]
            chunks = offsets[JSONL] // 1000
            assert chunks == size // 7001  # console and points of a batch commit together
            for name, sign in (("loss", 0.5), ("acc", -1.0)):
                p = ms.points(run, name)
                assert np.array_equal(p.step, np.arange(chunks * 1500))
                assert np.array_equal(p.value, np.arange(chunks * 1500) * sign)
            committed.add(chunks)
        assert len(committed) == 1
        return committed.pop()


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_offsets_matching_the_data(home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    path = home / "labdeck.sqlite3"
    done = 0
    kills = 8
    for attempt in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        stamps = []
        for line in proc.stdout:
            stamps.append(float(line.split()[1]))
            if len(stamps) == 3:
                break
        # Kill at a different point of the ingest cycle each time (attempt/kills of it).
        period = (stamps[-1] - stamps[0]) / 2
        time.sleep(period * attempt / kills)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        committed = check_consistent(path)
        assert committed >= done + 3  # every writer resumed from the store and advanced
        done = committed
