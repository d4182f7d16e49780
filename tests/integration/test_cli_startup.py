"""What ``labdeck`` loads when it only has to answer from its parser (``--version``,
``--help``, ``COMMAND --help``): none of the store, SSH, YAML, numpy or Qt stack, each of
which costs a visible fraction of a second. Checked through ``python -X importtime``,
which names every module the real entry point imports; the time itself is a benchmark
(tests/bench/bench_startup.py), not an assert here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import serve_cmd
from app.cli.main import build_parser
from tests.harness.labcli import REPO, LabCli

HEAVY = ("sqlite_utils", "sqlite3", "paramiko", "yaml", "PySide6", "pyqtgraph", "numpy",
         "keyring")


@pytest.fixture
def labdeck(tmp_path: Path) -> LabCli:
    return LabCli(tmp_path)


def command_names() -> list[str]:
    parser = build_parser()
    (commands,) = [action for action in parser._actions
                   if isinstance(action, argparse._SubParsersAction)]
    return sorted(commands.choices)


def imported(labdeck: LabCli, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m app ARGS``; its result and the top-level packages
    it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "app", *args],
                            cwd=REPO, env=labdeck.env, capture_output=True, text=True,
                            timeout=60, check=False)
    # "import time: <self us> | <cumulative us> | <indented module name>"
    names = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    return result, {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [
    ("--version",), ("--help",), ("hosts", "--help"), ("hosts", "trust", "--help"),
    *((name, "--help") for name in command_names()),
], ids=" ".join)
def test_parser_answers_load_no_heavy_package(labdeck: LabCli, args: tuple[str, ...]) -> None:
    result, packages = imported(labdeck, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
    assert sorted(packages.intersection(HEAVY)) == []


def test_the_check_sees_what_a_command_imports(labdeck: LabCli) -> None:
    # The same check on a command that opens the store: the parsing above is not blind.
    result, packages = imported(labdeck, "hosts", "ls")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"sqlite_utils", "sqlite3"} <= packages


def test_serve_poll_default_is_the_dispatchers() -> None:
    # Written out in serve_cmd so that its parser needs no dispatcher.
    from app.core.queue.dispatcher import DispatchOptions

    assert serve_cmd.DEFAULT_POLL_S == DispatchOptions().poll_s
