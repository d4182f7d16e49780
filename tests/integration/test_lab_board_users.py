"""The lab board between real Unix users: a reservation made by one user's Labdeck is seen
by another's (``labdeck gpus``, ``labdeck lab``), never launched onto by it, cannot be
lifted by it, and ends by itself. Both users under umask 077, on a real sshd host."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.queue.runs import RunState
from tests.harness.gpu_intervals import read_host_records, sweep_file
from tests.harness.labapp import LabApp, run_dirs
from tests.harness.sshd import SshdHost, SshdLab
from tests.harness.unixusers import LabUser, UnixUsers

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

RESERVED_FOR_S = 25


@dataclass
class Pair:
    alice: LabUser
    bob: LabUser
    host: SshdHost


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with UnixUsers() as made:
        sshd = SshdLab(made.folder("sshd"))
        try:
            alice, bob = made.add(0o077), made.add(0o077)
            host = sshd.add_host("ws1", start=False)
            host.umask = 0o077
            for user in (alice, bob):
                made.admit(host, user)
            host.start()
            yield Pair(alice, bob, host)
        finally:
            sshd.close()


@pytest.mark.timeout(240)
def test_a_reservation_holds_between_users_and_ends_by_itself(
    tmp_path: Path, pair: Pair
) -> None:
    alices = LabApp(tmp_path / "alice", [pair.host], spec=pair.alice.spec)
    bobs = LabApp(tmp_path / "bob", [pair.host], spec=pair.bob.spec)
    try:
        made = alices("reserve", pair.host.name, "1", "--for", f"{RESERVED_FOR_S}s",
                      "--note", "debugging <b>by hand</b>")
        assert made.returncode == 0, made.stderr
        until = time.time() + RESERVED_FOR_S
        # Both users see it, named by the kernel's word for alice.
        for app in (alices, bobs):
            shown = app("gpus", "--json")
            assert shown.returncode == 0, shown.stderr
            gpus = json.loads(shown.stdout)["hosts"][0]["gpus"]
            reserved = {g["index"]: g["reserved"] for g in gpus if g["reserved"]}
            assert list(reserved) == [1], reserved
            assert reserved[1].startswith(f"reserved by {pair.alice.name} until ")
            assert reserved[1].endswith("— debugging <b>by hand</b>")
        # Bob cannot lift it.
        lifted = bobs("unreserve", pair.host.name, "1")
        assert lifted.returncode == 1 and f"stays reserved by {pair.alice.name}" in lifted.stderr
        # Bob's runs fill the host: never GPU 1 while it is reserved.
        ids = bobs.submit(str(sweep_file(tmp_path / "fill.yaml", "fill", 9)))
        serve = bobs.serve("--until-done", "--poll", "0.5")
        assert serve.wait(150) == 0, bobs.serve_output()[-3000:]
        runs = bobs.runs()
        assert [r.state for r in runs] == [RunState.SUCCEEDED] * len(ids)
        records = read_host_records([pair.host], skip=set(), home=pair.bob.home_on)
        uuid1 = next(g["uuid"] for g in gpus if g["index"] == 1)
        early = [(s, e, run) for s, e, run in records.jobs.get(uuid1, []) if s < until - 1]
        assert early == [], early
        lab = json.loads(bobs("lab", "--json").stdout)
        if time.time() < until - 2:
            assert [r["user"] for r in lab["reservations"]] == [pair.alice.name]
        # It ends by itself.
        time.sleep(max(0.0, until - time.time()) + 1)
        after = json.loads(bobs("lab", "--json").stdout)
        assert after["reservations"] == []
        shown = json.loads(alices("gpus", "--json").stdout)["hosts"][0]["gpus"]
        assert all(g["reserved"] is None for g in shown)
    finally:
        alices.close()
        bobs.close()


# Sleeps for the number given as its last argument, recording start and end as
# ``gpu_intervals.JOB_CODE`` does.
SLEEP_CODE = (
    "import os, sys, time; t0 = time.time(); time.sleep(float(sys.argv[-1])); "
    "open(os.path.join(os.environ['LABDECK_RUN_DIR'], 'times'), 'w')"
    ".write('%r %r' % (t0, time.time()))"
)


def sleeps_file(path: Path, name: str, seconds: list[float], priority: int = 0) -> Path:
    values = ", ".join(f"'{s:g}'" for s in seconds)
    path.write_text(f"name: {name}\npriority: {priority}\n"
                    f"command: [python3, -c, {json.dumps(SLEEP_CODE)}, --s, '0']\n"
                    f"sweep:\n  s: [{values}]\n")
    return path


@pytest.mark.timeout(240)
def test_a_freed_gpu_goes_to_the_labmate_below_their_share(tmp_path: Path, pair: Pair) -> None:
    """Alice holds two GPUs and has more runs waiting; two more GPUs are reserved. Bob
    (holding none) waits for two. When the reservation ends, both Labdecks see the two
    GPUs free at the same moment: both go to Bob, who is below his share."""
    alices = LabApp(tmp_path / "alice", [pair.host], spec=pair.alice.spec)
    bobs = LabApp(tmp_path / "bob", [pair.host], spec=pair.bob.spec)
    before = {u.name: {pair.host.name: set(run_dirs(pair.host, u.home_on(pair.host)))}
              for u in (pair.alice, pair.bob)}
    try:
        ends_at = time.time() + 20  # the first of the two ends no sooner than this
        for gpu in ("2", "3"):
            made = alices("reserve", pair.host.name, gpu, "--for", "20s")
            assert made.returncode == 0, made.stderr
        alices.submit(str(sleeps_file(tmp_path / "long.yaml", "long", [32, 33], 1)))
        alices.submit(str(sleeps_file(tmp_path / "more.yaml", "more", [2, 2.1, 2.2, 2.3])))
        serve_a = alices.serve("--until-done", "--poll", "0.5")
        bobs.submit(str(sleeps_file(tmp_path / "bob.yaml", "bob", [10, 10.1])))
        serve_b = bobs.serve("--until-done", "--poll", "0.5")
        assert serve_b.wait(150) == 0, bobs.serve_output()[-3000:]
        assert serve_a.wait(150) == 0, alices.serve_output()[-3000:]
        for app in (alices, bobs):
            assert {r.state for r in app.runs()} == {RunState.SUCCEEDED}
    finally:
        alices.close()
        bobs.close()
    starts = {}
    for user in (pair.alice, pair.bob):
        records = read_host_records([pair.host], skip=before[user.name], home=user.home_on)
        assert records.duplicates() == [], user.name
        assert records.failed() == {}, user.name
        starts[user.name] = sorted(s for spans in records.jobs.values() for s, _e, _r in spans)
    alice, bob = starts[pair.alice.name], starts[pair.bob.name]
    assert len(alice) == 6 and len(bob) == 2
    # Alice's two long runs took GPUs 0 and 1; nothing ran on the reserved ones before
    # the end; then both went to Bob, before any of Alice's waiting runs started.
    assert alice[1] < ends_at - 5 and min(bob) > ends_at - 1
    assert max(bob) < alice[2], (f"bob started at {[round(s - ends_at, 1) for s in bob]} s "
                                 f"after the reservation ended, alice's third run at "
                                 f"{alice[2] - ends_at:.1f} s")
