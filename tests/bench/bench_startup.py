"""Start-up: ``python -m app`` (the ``labdeck`` window) to its first painted frame.

    .venv/bin/python tests/bench/bench_startup.py [smoke|quick|full]

Each start is a fresh process (QT_QPA_PLATFORM=offscreen) over a LABDECK_HOME whose store
holds the runs of ``tests/harness/runs_data.py`` (100k in quick and full). The window prints
the wall time of its first paint and closes itself when LABDECK_EXIT_AFTER_FIRST_PAINT=1
(a hook in ``app/ui/shell/main.py``); the figure is that time minus the moment the process was
spawned. "Cold" here is a new interpreter; the OS page cache stays warm (dropping it
would need root on a shared machine), so the first start of a session is slower.

The command line's own answers are timed too: ``labdeck --version``, ``--help`` and
``hosts --help``, spawn to exit, which need the parser only and so no store, SSH or Qt.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_runs_table import build_store
from tests.bench.benchlib import figure, median, pick, rss_mib
from tests.harness.labcli import LabCli

FIRST_PAINT = re.compile(r"labdeck: first paint at ([0-9.]+)")


def one_start(home: Path, user_home: Path) -> tuple[float, float]:
    """(seconds from spawn to first paint, RSS in MiB at that moment)."""
    labdeck = LabCli(home.parent, home=home, user_home=user_home, env={
        "QT_QPA_PLATFORM": "offscreen", "LABDECK_EXIT_AFTER_FIRST_PAINT": "1"})
    spawned = time.time()
    proc = labdeck.popen(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    painted, rss, said = None, 0.0, []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            said.append(line)
            found = FIRST_PAINT.search(line)
            if found:
                painted = float(found.group(1)) - spawned
                try:
                    rss = rss_mib(proc.pid)
                except OSError:
                    pass
                break
        proc.stderr.close()
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if painted is None or code != 0:
        raise RuntimeError(f"labdeck exited {code} without a first paint:\n{''.join(said)}")
    return painted, rss


CLI_ANSWERS = (("--version",), ("--help",), ("hosts", "--help"))


def cli_answers(root: Path, starts: int) -> list[dict[str, Any]]:
    """Spawn-to-exit wall time of each parser-only command, median of ``starts``."""
    labdeck = LabCli(root)
    figures = []
    for args in CLI_ANSWERS:
        labdeck(*args)  # warms the page cache and the bytecode cache
        times = []
        for _ in range(starts):
            started = time.perf_counter()
            result = labdeck(*args)
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise RuntimeError(f"labdeck {' '.join(args)} exited {result.returncode}:"
                                   f"\n{result.stderr}")
        figures.append(figure(
            f"start-up: labdeck {' '.join(args)}", median(times), "s",
            target="< 0.3 s", max_value=0.3,
            note=f"python -m app, spawn to exit, median of {starts} "
                 f"(max {max(times):.2f} s)",
        ))
    return figures


def measure(mode: str) -> list[dict[str, Any]]:
    runs = pick(mode, 2_000, 100_000, 100_000)
    starts = pick(mode, 1, 3, 7)
    with tempfile.TemporaryDirectory(prefix="labdeck-bench-startup-") as tmp:
        root = Path(tmp)
        user_home = root / "user"
        user_home.mkdir()
        empty, full = root / "empty", root / "full"
        full.mkdir(mode=0o700)
        source = build_store(runs)
        source.close()
        shutil.copyfile(f"/tmp/labdeck-bench-runs-{runs}.sqlite3", full / "labdeck.sqlite3")
        (full / "labdeck.sqlite3").chmod(0o600)
        first_empty = one_start(empty, user_home)[0]  # also warms the page cache
        with_runs = [one_start(full, user_home) for _ in range(starts)]
        answers = cli_answers(root / "cli", pick(mode, 1, 5, 15))
    times = [t for t, _ in with_runs]
    return [*answers, figure(
        "start-up: to first painted window", median(times), "s",
        target="< 1.5 s", max_value=1.5,
        note=f"python -m app, {runs:,} runs in the store, median of {starts} "
             f"(max {max(times):.2f} s); first start on an empty home {first_empty:.2f} s; "
             f"RSS at first paint {median([r for _, r in with_runs]):.0f} MiB",
    )]


if __name__ == "__main__":
    for row in measure(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(row)
