"""How ``labdeck`` output behaves in a shell: a reader that stops early (``labdeck ls |
head -1``) ends the command quietly, and a run's time reads the same in ``ls``, ``show``
and ``why``. Real subprocesses over a store filled through the real stores."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.jobs.jobspec import JobSpec
from app.core.queue.runs import RunState
from ssh_backend.protocol import MetricPoint, TailChunk
from tests.harness.labcli import REPO, StoreCli

# More than a pipe holds (64 KiB on Linux): the command is still writing when the
# reader goes.
CONSOLE = b"".join(b"step %d of a long training log\n" % i for i in range(40_000))
POINTS = tuple(MetricPoint("loss", i, 1_700_000_000 + i, 1 / (i + 1)) for i in range(20_000))


@pytest.fixture
def busy_run(store_cli: StoreCli) -> str:
    """A run with a long console and many points, behind 2,000 queued runs."""
    store_cli.runs.submit([JobSpec(name=f"job{i}", argv=("true",)).to_dict()
                           for i in range(2_000)], "al")
    run_id = store_cli.finished_run()
    store_cli.metrics.ingest([
        ("ws1", TailChunk(run_id, "output.log", 1, 0, len(CONSOLE), CONSOLE)),
        ("ws1", TailChunk(run_id, "metrics.jsonl", 1, 0, 100, points=POINTS)),
    ])
    return run_id


def first_line_then_close(cli: StoreCli, tmp_path: Path, *args: str) -> tuple[bytes, bytes, int]:
    """Read one line of the command's stdout, close the pipe: (that line, all of its
    stderr, its exit status)."""
    with (tmp_path / "stderr").open("w+b") as err:
        proc = cli.popen(*args, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            proc.stdout.close()
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        return line, err.read(), code


@pytest.mark.parametrize("args", [
    ("ls",), ("logs", "RUN"), ("logs", "--safe", "RUN"), ("metrics", "RUN"),
    ("metrics", "RUN", "--csv"), ("metrics", "RUN", "--json"),
], ids=" ".join)
def test_a_reader_that_stops_early_ends_the_command_quietly(
    store_cli: StoreCli, busy_run: str, tmp_path: Path, args: tuple[str, ...],
) -> None:
    line, err, code = first_line_then_close(
        store_cli, tmp_path, *(busy_run if a == "RUN" else a for a in args))
    assert line.strip()
    assert err == b""  # no traceback, no "Exception ignored", no "unexpected error"
    assert code == 141  # as a shell reports a writer that SIGPIPE ended


def test_a_broken_pipe_that_is_not_stdout_stays_an_error(store_cli: StoreCli) -> None:
    code = (
        "import app.cli.runs_cmd as r\n"
        "def boom(args): raise BrokenPipeError(32, 'Broken pipe')\n"
        "r._ls = boom\n"
        "from app.cli.main import main\n"
        "raise SystemExit(main(['ls']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=store_cli.env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 70
    assert "unexpected error: BrokenPipeError" in result.stderr


def ran(store_cli: StoreCli, seconds: float) -> str:
    """A run that succeeded on ws1 after ``seconds``."""
    (run_id,) = store_cli.runs.submit([JobSpec(name="job", argv=("true",)).to_dict()], "al")
    started = time.time() - 86_400
    assert store_cli.runs.claim(run_id, "ws1", [0], ["GPU-0"])
    assert store_cli.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING,
                                     started_at=started)
    assert store_cli.runs.transition(run_id, RunState.RUNNING, RunState.SUCCEEDED,
                                     exit_code=0, ended_at=started + seconds)
    return run_id


@pytest.mark.parametrize(("seconds", "text"), [
    (45.4, "45 s"), (303, "5 min 03 s"), (7_503, "2 h 05 min"), (200_000, "55 h 33 min"),
])
def test_ls_show_and_why_say_a_runs_time_alike(store_cli: StoreCli, seconds: float,
                                               text: str) -> None:
    run_id = ran(store_cli, seconds)
    listed = store_cli("ls")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    at = header.index("TIME")
    assert row[at:].startswith(text + "  ")
    shown = store_cli("show", run_id).stdout.splitlines()
    assert f"time       {text}" in shown
    assert store_cli("why", run_id).stdout == f"{run_id} is succeeded on ws1 ({text})\n"


def test_why_says_how_long_a_queued_run_has_waited(store_cli: StoreCli) -> None:
    (run_id,) = store_cli.runs.submit([JobSpec(name="q", argv=("true",)).to_dict()], "al")
    result = store_cli("why", run_id)
    assert result.returncode == 0, result.stderr
    # Seconds since the submit above (a slow machine may take several).
    assert re.match(rf"{run_id} has waited \d+ s: cannot start as the lab stands",
                    result.stdout), result.stdout
