"""The lab board on a host: reservations that every lab member's Labdeck honours, owned by
the kernel's word (file owner), never by a name or text someone wrote; tested with a real
second Unix user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.runhost import AGENT_DIR, RUNCTL, RunHost, python_job

sys.path.insert(0, str(AGENT_DIR))
import board

SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"
OTHER = "nobody"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A sticky, world-writable board folder both users can reach (not under pytest's
    0700 tmp), made by this test and removed after."""
    folder = Path("/tmp") / f"labdeck-board-test-{uuid.uuid4().hex[:10]}"
    folder.mkdir()
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_user(user: str, request: dict, folder: Path) -> dict:
    """runctl, run as ``user`` with that user's own umask 077, on the board ``folder``."""
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.umask(0o077)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    python = sys.executable if user == "root" else SYSTEM_PYTHON
    done = subprocess.run(
        [python, "-B", str(RUNCTL)], input=json.dumps(request).encode(), capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": entry.pw_dir, "LABDECK_BOARD_DIR": str(folder)},
        preexec_fn=demote if user != "root" else None, timeout=20, check=False)
    assert done.returncode == 0, done.stderr.decode()
    reply: dict = json.loads(done.stdout)
    return reply


def reserve(user: str, folder: Path, gpu: str, hours: float = 1.0, note: str = "") -> dict:
    return as_user(user, {"op": "reserve", "gpu_uuid": gpu, "until": time.time() + hours * 3600,
                          "note": note}, folder)


def listing(folder: Path, user: str = "root") -> list[tuple[str, str, str]]:
    reply = as_user(user, {"op": "board"}, folder)
    assert reply["ok"], reply
    return [(r["gpu_uuid"], r["user"], r["note"]) for r in reply["board"]["reservations"]]


def test_reservations_are_seen_by_everyone_and_owned_by_their_maker(shared: Path) -> None:
    assert reserve("root", shared, "GPU-3", note="manual work")["ok"]
    assert listing(shared, OTHER) == [("GPU-3", "root", "manual work")]
    # Another user cannot take it over, nor lift it.
    taken = reserve(OTHER, shared, "GPU-3")
    assert taken["ok"] is False and "already reserved by root until" in taken["refused"]
    assert as_user(OTHER, {"op": "unreserve", "gpu_uuid": "GPU-3"}, shared)["ok"]
    assert listing(shared) == [("GPU-3", "root", "manual work")]
    # Their own reservation is theirs; the owner lifts only their own.
    assert reserve(OTHER, shared, "GPU-4")["ok"]
    assert as_user("root", {"op": "unreserve", "gpu_uuid": "GPU-3"}, shared)["ok"]
    assert listing(shared) == [("GPU-4", OTHER, "")]
    # Under umask 077 the file is still readable by the lab (that is its point).
    mine = shared / f"labdeck-board-{pwd.getpwnam(OTHER).pw_uid}.json"
    assert mine.stat().st_mode & 0o777 == 0o644


def test_a_forged_file_counts_as_its_real_owners(shared: Path) -> None:
    # The other user writes a file named as root's, claiming root reserved GPU-9.
    forged = {"reservations": [{"gpu_uuid": "GPU-9", "until": time.time() + 3600,
                                "note": "root says", "user": "root", "uid": 0}]}
    script = (f"import json,os; os.umask(0o022); "
              f"open({str(shared / 'labdeck-board-0.json')!r},'w').write({json.dumps(forged)!r})")
    entry = pwd.getpwnam(OTHER)
    subprocess.run([SYSTEM_PYTHON, "-c", script], check=True, preexec_fn=lambda: (
        os.setgid(entry.pw_gid), os.setuid(entry.pw_uid)))
    assert listing(shared) == [("GPU-9", OTHER, "root says")]
    # Root's own reservations still work (under another name) and stay root's.
    assert reserve("root", shared, "GPU-1")["ok"]
    assert sorted(listing(shared)) == [("GPU-1", "root", ""), ("GPU-9", OTHER, "root says")]


def test_junk_on_the_board_is_ignored_without_hanging(shared: Path) -> None:
    os.mkfifo(shared / "labdeck-board-fifo.json")
    (shared / "labdeck-board-big.json").write_bytes(b"{" + b" " * (board.MAX_FILE_BYTES + 10))
    (shared / "labdeck-board-bad.json").write_text("not json")
    (shared / "labdeck-board-link.json").symlink_to("/etc/passwd")
    expired = {"reservations": [{"gpu_uuid": "GPU-old", "until": time.time() - 1}]}
    (shared / "labdeck-board-exp.json").write_text(json.dumps(expired))
    started = time.monotonic()
    assert listing(shared) == []
    assert time.monotonic() - started < 10


def test_an_unsafe_board_folder_is_refused_with_the_reason(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)  # world-writable, not sticky: anyone could delete entries
    with pytest.raises(board.Unsafe, match="not sticky"):
        board.read(str(open_folder))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, pwd.getpwnam(OTHER).pw_uid, -1)
    with pytest.raises(board.Unsafe, match="belongs to another user"):
        board.read(str(theirs))
    link = tmp_path / "link"
    link.symlink_to(open_folder)
    with pytest.raises(board.Unsafe, match="not a real folder"):
        board.read(str(link))


def test_a_run_is_never_launched_onto_a_gpu_reserved_by_a_labmate(tmp_path: Path) -> None:
    host = RunHost(tmp_path)
    try:
        other = pwd.getpwnam(OTHER)
        mine = {"reservations": [{"gpu_uuid": "GPU-r", "until": time.time() + 600,
                                  "note": "debugging by hand"}]}
        path = host.board_dir / f"labdeck-board-{other.pw_uid}.json"
        path.write_text(json.dumps(mine))
        os.chown(path, other.pw_uid, other.pw_gid)
        ran = host.root / "ran"
        reply = host.launch("rresv0001", python_job(f"open({str(ran)!r},'w')"),
                            gpus=((0, "GPU-r"),))
        assert reply["ok"] is False
        assert reply["refused"].startswith(f"GPU GPU-r is reserved by {OTHER} until ")
        assert reply["refused"].endswith("— debugging by hand")
        assert not ran.exists() and not host.run_dir("rresv0001").exists()
        # Another GPU of the same host is free to use.
        assert host.launch("rresv0002", ["true"], gpus=((1, "GPU-free"),))["ok"]
    finally:
        host.cleanup()


def test_demand_is_published_read_by_all_and_fades(shared: Path) -> None:
    demand = [{"gpus": 2, "runs": 3, "since": time.time() - 60, "priority": 0}]
    reply = as_user(OTHER, {"op": "board", "demand": demand}, shared)
    assert reply["ok"], reply
    seen = listing_demand(shared)
    assert seen == [(OTHER, 2, 3)]
    # A closed laptop stops renewing it: after the time-to-live it is gone.
    later = board.read(str(shared), now=time.time() + board.DEMAND_TTL_S + 1)
    assert later["demand"] == []
    # Garbage entries are dropped, not trusted.
    bad = [{"gpus": 0, "runs": 1, "since": 1.0}, {"gpus": "2"}, "x",
           {"gpus": 1, "runs": 1, "since": 5.0, "priority": 1}]
    as_user(OTHER, {"op": "board", "demand": bad}, shared)
    assert listing_demand(shared) == [(OTHER, 1, 1)]


def test_the_board_names_lease_holders_by_the_kernel(tmp_path: Path) -> None:
    host = RunHost(tmp_path)
    try:
        gate = host.root / "go-b"
        job = python_job(f"import os,time\nwhile not os.path.exists({str(gate)!r}): "
                         "time.sleep(0.02)")
        assert host.launch("rboard001", job, gpus=((0, "GPU-bl0"), (1, "GPU-bl1")))["ok"]
        reply = host.ctl({"op": "board"})
        held = sorted((h["gpu_uuid"], h["user"], h["run_id"]) for h in reply["board"]["leases"])
        assert held == [("GPU-bl0", "root", "rboard001"), ("GPU-bl1", "root", "rboard001")]
        gate.touch()
        host.wait_kind("rboard001", "finished")
        assert host.ctl({"op": "board"})["board"]["leases"] == []
    finally:
        host.cleanup()


def listing_demand(folder: Path) -> list[tuple[str, int, int]]:
    reply = as_user("root", {"op": "board"}, folder)
    return [(d["user"], d["gpus"], d["runs"]) for d in reply["board"]["demand"]]


def test_a_runs_gpu_time_reaches_its_users_gpu_hours(tmp_path: Path) -> None:
    host = RunHost(tmp_path)
    try:
        assert host.launch("rusage001", python_job("import time; time.sleep(1.0)"),
                           gpus=((0, "GPU-u0"), (1, "GPU-u1")))["ok"]
        host.wait_kind("rusage001", "finished")
        files = list(host.board_dir.glob("labdeck-board-*.json"))
        assert len(files) == 1
        seconds = sum(json.loads(files[0].read_text())["usage"].values())
        assert 2 * 0.9 <= seconds <= 2 * 5.0  # two GPUs for the job's second or so
        used = host.ctl({"op": "board"})["board"]["usage"]
        assert [(u["user"], u["week_gpu_h"] == u["day_gpu_h"] > 0) for u in used] \
            == [("root", True)]
    finally:
        host.cleanup()


def test_gpu_hours_are_split_by_hour_and_no_writer_loses_another(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    now = time.time()
    hour = int(now // 3600) * 3600
    board.add_usage(2, hour - 1800, hour + 1, folder=str(shared))  # spans two hours
    mine = json.loads(Path(board.own_path(str(shared))).read_text())["usage"]
    assert mine == {str(hour - 3600): 3600.0, str(hour): 2.0}
    # Eight processes adding and publishing demand at once: every second is counted.
    script = (f"import sys,time; sys.path.insert(0, {str(AGENT_DIR)!r}); import board\n"
              "for i in range(20):\n"
              "    end = time.time() - 10.0\n"
              f"    board.add_usage(1, end - 10.0, end, folder={str(shared)!r})\n"
              f"    board.publish_demand([], folder={str(shared)!r})\n")
    workers = [subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
               for _ in range(8)]
    assert [w.wait(timeout=60) for w in workers] == [0] * 8
    usage = json.loads(Path(board.own_path(str(shared))).read_text())["usage"]
    assert abs(sum(usage.values()) - (3602.0 + 8 * 20 * 10.0)) < 1e-3
    totals = board.read(str(shared))["usage"]
    assert abs(totals[0]["week_gpu_h"] - (3602.0 + 1600.0) / 3600) < 1e-3
    # Hours older than a week fade; a far-future hour is not believed.
    stale = {"usage": {str(hour - 9 * 86400): 100.0, str(hour + 7200): 50.0}}
    forged = shared / "labdeck-board-forged.json"
    forged.write_text(json.dumps(stale))
    os.chown(forged, pwd.getpwnam(OTHER).pw_uid, -1)
    assert [u["user"] for u in board.read(str(shared))["usage"]] == ["root"]
