"""``labdeck open FILE`` while a Labdeck window is open: the file goes to that window's
submit dialog, ten times in a row, from ten real second processes, and the window lives
on (no crash, no error in its log)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.labcli import LabCli

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(180)]
HANDOFFS = 10


def test_open_hands_files_to_the_running_window_ten_times(tmp_path: Path) -> None:
    cli = LabCli(tmp_path, inherit_env=True, env={"QT_QPA_PLATFORM": "offscreen"})
    script = tmp_path / "train.py"
    script.write_text("import argparse\np = argparse.ArgumentParser()\n"
                      "p.add_argument('--lr', type=float, default=0.1)\np.parse_args()\n")
    window = cli.popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # the window
    log = cli.home / "logs" / "labdeck.log"
    try:
        deadline = time.monotonic() + 60
        while not log.exists() or "taking files from later calls" not in log.read_text():
            assert window.poll() is None, window.communicate()
            assert time.monotonic() < deadline, "the window never listened for handoffs"
            time.sleep(0.2)
        for _ in range(HANDOFFS):
            done = cli("open", str(script))
            assert done.returncode == 0 and "handed over" in done.stdout, done.stderr
        deadline = time.monotonic() + 30
        while log.read_text().count("file(s) for the submit dialog") < HANDOFFS:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert window.poll() is None, window.communicate()
            time.sleep(0.2)
        assert window.poll() is None  # still open after ten handoffs
        text = log.read_text()
        assert "Traceback" not in text and "unexpected error" not in text, text[-3000:]
    finally:
        window.send_signal(signal.SIGTERM)
        try:
            window.communicate(timeout=20)  # reads and closes its pipes
        except subprocess.TimeoutExpired:
            window.kill()
            window.communicate(timeout=10)
