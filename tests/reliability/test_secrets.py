"""Secrets end to end over real sshd: the job gets the value, nothing else ever does.

Real ``labdeck secrets`` / ``submit`` / ``serve`` subprocesses, a real sshd host, the
real agent, runctl and wrapper; the keyring is a real backend class keeping values in a
0600 file under the test's tmp dir (tests/harness/file_keyring.py, test-only). Proven:
the job sees the right value (it prints a hash, never the value); while it runs no
process has the value on its command line and only the job's own processes have it in
their environment; afterwards not one byte of it is in the store (+ WAL), Labdeck's home
and logs, serve's output, the host's whole ``~/.labdeck`` tree or sshd's log. Also: a
retry after a lost run reads the keyring again, a missing secret fails the run with its
name, local files are 0600 / dirs 0700 and remote run dirs 0700 with job.json 0600, and
env and secret values with quotes, ``$(...)``, newlines and unicode reach the job
byte-exact through sshd (hypothesis).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets as token_source
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.queue.runs import Run, RunState
from ssh_backend.connect import Timeouts
from ssh_backend.runs import LaunchRequest, launch, reconcile
from ssh_backend.session import HostSession
from ssh_backend.states import HostState
from tests.conftest import Lab
from tests.harness.labapp import LabApp, base_run_id, run_dirs
from tests.harness.recorder import Recorder
from tests.harness.runhost import RunHost, wait_until
from tests.reliability.scale import pick

pytestmark = [pytest.mark.reliability, pytest.mark.sshd]

# Prints a hash of what it got (never the value), then waits for ~/<gate> on the host.
JOB = """\
import hashlib, os, sys, time
value = os.environ.get("API_TOKEN")
digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else "none"
print("secret-sha256=" + digest, flush=True)
gate = os.path.join(os.path.expanduser("~"), sys.argv[1])
while not os.path.exists(gate):
    time.sleep(0.05)
"""


@pytest.fixture(autouse=True)
def _kill_leftover_runs(lab: Lab) -> Iterator[None]:
    yield
    for host in lab.hosts:
        RunHost(host.root).cleanup()


@pytest.fixture
def app(tmp_path: Path, lab: Lab) -> Iterator[LabApp]:
    labapp = LabApp(tmp_path, lab.hosts[:1])
    labapp.use_file_keyring(tmp_path / "keyring" / "kr.json")  # outside LABDECK_HOME
    yield labapp
    labapp.close()


def set_secret(app: LabApp, name: str, value: str) -> None:
    done = app.raw("secrets", "set", name, input=value.encode())
    assert done.returncode == 0, done.stderr


def digest(value: str) -> str:
    return "secret-sha256=" + hashlib.sha256(value.encode()).hexdigest()


def started_folder(app: LabApp, run_id: str) -> Path:
    """The host folder of the run's current attempt, once its job has started (a launch
    cut short on a loaded machine is retried under a new attempt id)."""
    host = next(iter(app.hosts.values()))

    def folder() -> Path:
        return host.home / ".labdeck" / "runs" / app.run(run_id).host_run_id

    wait_until(lambda: app.run(run_id).state is RunState.RUNNING and
               (folder() / "state.json").exists(), 40, f"{run_id} to start", every=0.1)
    return folder()


def wait_output(folder: Path, needle: str) -> None:
    log = folder / "output.log"
    wait_until(lambda: log.exists() and needle.encode() in log.read_bytes(), 30,
               f"{needle} in {log}")


def scan_processes(token: bytes) -> int:
    """No command line holds ``token``; every environment that does is a job's (it has
    LABDECK_RUN_DIR, which only the wrapper gives, and only to the job). Returns how
    many job processes had it."""
    holders = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        assert token not in cmdline, (entry, cmdline)
        if token in environ:
            assert b"\0LABDECK_RUN_DIR=" in b"\0" + environ, (entry, cmdline)
            holders += 1
    return holders


def files_under(*roots: Path, skip: Path | None = None) -> Iterator[Path]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and (
                    skip is None or not path.is_relative_to(skip)):
                yield path


def assert_nowhere(app: LabApp, *tokens: bytes) -> int:
    """No file of this Labdeck (tmp dir minus the test keyring) or of the host (its whole
    root: ~/.labdeck, sshd.log, leases) holds any of ``tokens``; returns files searched."""
    host = next(iter(app.hosts.values()))
    assert (app.root / "serve-0.log").exists() and app.store_path.exists()
    count = 0
    for path in files_under(app.root, host.root, skip=app.root / "keyring"):
        data = path.read_bytes()
        for token in tokens:
            assert token not in data, path
        count += 1
    return count


def assert_private(root: Path, *, files: int = 0o600, dirs: int = 0o700) -> None:
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        assert mode == (dirs if path.is_dir() else files), (path, oct(mode))


@pytest.mark.timeout(120)
def test_the_job_gets_the_secret_and_nothing_else_does(app: LabApp, tmp_path: Path) -> None:
    token = "lbk-" + token_source.token_hex(20)
    set_secret(app, "API_TOKEN", token)
    script = tmp_path / "job.py"
    script.write_text(JOB)
    jobfile = tmp_path / "job.yaml"
    jobfile.write_text("script: job.py\nargs: [go-a]\nsecrets: [API_TOKEN]\n"
                       "env: {PLAIN: visible}\n")
    (from_file,) = app.submit(str(jobfile))
    (from_cli,) = app.submit(str(script), "--secret", "API_TOKEN", "--", "go-a")
    host = next(iter(app.hosts.values()))
    serve = app.serve("--poll", "0.5")
    try:
        folders = [started_folder(app, run_id) for run_id in (from_file, from_cli)]
        for folder in folders:
            wait_output(folder, digest(token))
        assert scan_processes(token.encode()) >= 2  # both jobs, nobody else
        # While serve runs the store has its WAL beside it: searched too.
        assert app.store_path.with_name(app.store_path.name + "-wal").exists()
        assert_nowhere(app, token.encode())
        (host.home / "go-a").touch()
        runs = app.wait_runs(lambda runs: all(r.state.finished for r in runs), 40, serve)
        assert [r.state for r in runs] == [RunState.SUCCEEDED] * 2, runs
    finally:
        assert app.stop(serve) == 0
        (host.home / "go-a").unlink(missing_ok=True)
    for folder in folders:
        assert (folder / "output.log").read_text() == digest(token) + "\n"
        assert "API_TOKEN" not in json.loads((folder / "job.json").read_text())["env"]
    assert all(r.spec["secrets"] == ["API_TOKEN"] for r in runs)
    searched = assert_nowhere(app, token.encode())
    assert searched > 20  # store, logs, serve output, agent, run folders, sshd.log
    assert token.encode() not in app.serve_output().encode()
    assert token.encode() not in host.log_path.read_bytes()
    # Local: LABDECK_HOME and everything in it (store, WAL, logs, known_hosts) private.
    assert_private(app.home)
    # Remote: the whole ~/.labdeck tree, run folders (0700) and job.json (0600) included.
    assert_private(host.home / ".labdeck")
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "job.json").stat().st_mode) == 0o600


@pytest.mark.timeout(150)
def test_a_retry_reads_the_keyring_again_and_a_missing_secret_fails_the_run(
    app: LabApp, tmp_path: Path
) -> None:
    first, second = ("lbk-" + token_source.token_hex(20) for _ in range(2))
    removed = "lbk-" + token_source.token_hex(20)
    host = next(iter(app.hosts.values()))
    script = tmp_path / "job.py"
    script.write_text(JOB)
    set_secret(app, "API_TOKEN", first)
    set_secret(app, "GONE_TOKEN", removed)
    (kept,) = app.submit(str(script), "--secret", "API_TOKEN", "--", "go-b")
    (missing,) = app.submit(str(script), "--secret", "GONE_TOKEN", "--", "go-b")
    gone = app.raw("secrets", "rm", "GONE_TOKEN")
    assert gone.returncode == 0, gone.stderr
    serve = app.serve("--poll", "0.5")
    try:
        def settled(runs: list[Run]) -> bool:
            by_id = {r.id: r for r in runs}
            return by_id[kept].state is RunState.RUNNING and by_id[missing].state.finished

        app.wait_runs(settled, 40, serve)
        failed = app.run(missing)
        assert failed.state is RunState.FAILED
        assert "secret GONE_TOKEN is not set" in failed.reason, failed.reason
        assert "labdeck secrets set GONE_TOKEN" in failed.reason
        one = started_folder(app, kept)
        attempt = app.run(kept).attempt
        wait_output(one, digest(first))
        set_secret(app, "API_TOKEN", second)  # changed while the run is on the host
        # A reboot: a new boot id and the run's processes gone; it comes back as lost.
        host.fake_reboot()
        for name in ("wrapper.json", "state.json"):
            pid = json.loads((one / name).read_text())["pid"]
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        app.wait_runs(lambda runs: app.run(kept).attempt > attempt, 40, serve)
        two = started_folder(app, kept)
        wait_output(two, digest(second))
        (host.home / "go-b").touch()
        app.wait_runs(lambda runs: app.run(kept).state.finished, 40, serve)
    finally:
        assert app.stop(serve) == 0
        (host.home / "go-b").unlink(missing_ok=True)
    assert app.run(kept).state is RunState.SUCCEEDED
    assert (two / "output.log").read_text() == digest(second) + "\n"
    assert missing not in {base_run_id(name) for name in run_dirs(host)}  # never launched
    assert "secret GONE_TOKEN is not set" in app.serve_output()
    assert_nowhere(app, first.encode(), second.encode(), removed.encode())


# -- injection: values reach the job byte-exact through sshd -----------------------------
QUICK = Timeouts(channel=2.0, dead_after=4.0, ping_interval=1.0, backoff_initial=0.2,
                 backoff_max=1.0)
DUMP = ("import json,os\n"
        "seen={k.decode(): v.hex() for k, v in os.environb.items() if k[:2] in (b'S_', b'E_')}\n"
        "open(os.environ['LABDECK_RUN_DIR']+'/seen.json','w').write(json.dumps(seen))")
_VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                 max_size=40)
_numbers = itertools.count(1)


@pytest.fixture
def session(lab: Lab, tmp_path: Path) -> Iterator[HostSession]:
    host = lab.hosts[1]
    empty = tmp_path / "no-default-keys"
    empty.mkdir()
    rec = Recorder()
    made = HostSession(host.spec(), rec, known_hosts=lab.known_hosts, timeouts=QUICK,
                       key_dir=empty)
    made.start()
    try:
        assert rec.wait_for(lambda: any(e.state is HostState.ONLINE for e in rec.states), 20)
        yield made
    finally:
        made.stop()


@pytest.mark.timeout(180)
def test_env_and_secret_values_reach_the_job_byte_exact_through_sshd(
    session: HostSession, lab: Lab
) -> None:
    host = lab.hosts[1]

    @settings(max_examples=pick(6, 60), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(env=st.lists(_VALUE, max_size=3), hidden=st.lists(_VALUE, max_size=3))
    @example(env=["$(touch PWNED)", "`touch PWNED`; x", "'\"\\"],
             hidden=["$(touch PWNED)", "line1\nline2\r\n", "ünï ☃ $HOME 𝄞"])
    @example(env=["", " ", "a\tb"], hidden=["'; touch PWNED; '", '"$(id)"', "\n"])
    def check(env: list[str], hidden: list[str]) -> None:
        run_id = f"inject-{os.getpid()}-{next(_numbers)}"
        env_vars = {f"E_{i}": value for i, value in enumerate(env)}
        values = {f"S_{i}": value for i, value in enumerate(hidden)}
        job = {"argv": [sys.executable, "-c", DUMP], "env": env_vars}
        status = launch(session, LaunchRequest(run_id, job, (0,), (f"GPU-{run_id}",),
                                               secrets=values))
        folder = host.home / ".labdeck" / "runs" / run_id
        wait_until(lambda: (folder / "exit_code").exists(), 20, f"{run_id} to end")
        done = reconcile(session, [run_id])[run_id]
        assert (status.kind, done.kind, done.exit_code) in {
            ("running", "finished", 0), ("finished", "finished", 0)}, (status, done)
        seen = json.loads((folder / "seen.json").read_text())
        want = {k: v.encode().hex() for k, v in {**env_vars, **values}.items()}
        assert seen == want
        assert json.loads((folder / "job.json").read_text())["env"] == env_vars
        assert not list(host.home.rglob("PWNED"))

    check()
