"""A second labdeck hands its argv to the running one and exits 0: real processes over a
real local socket."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.ui.shell.single_instance import SingleInstance, server_name

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]

FORWARD = """
import sys
from PySide6.QtCore import QCoreApplication
from app.ui.shell.single_instance import SingleInstance
app = QCoreApplication([])
sys.exit(0 if SingleInstance().try_forward(sys.argv[1:]) else 3)
"""

PRIMARY = """
import json, sys
from PySide6.QtCore import QCoreApplication, QTimer
from app.ui.shell.single_instance import SingleInstance
app = QCoreApplication([])
inst = SingleInstance()
assert inst.listen()
got = []
inst.received.connect(lambda argv: (got.append(argv), QTimer.singleShot(50, app.quit)))
print("ready", flush=True)
QTimer.singleShot(20000, app.quit)
app.exec()
inst.close()
print(json.dumps(got), flush=True)
"""


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, LABDECK_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    env["PYTHONPATH"] = str(ROOT)
    return env


def _python(code: str, home: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=_env(home), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_second_process_forwards_argv_to_the_first_and_exits_0(tmp_path: Path) -> None:
    primary = _python(PRIMARY, tmp_path)
    try:
        assert primary.stdout.readline().strip() == "ready"
        files = ["train.py", str(tmp_path / "sweep job.yaml"), "--gpus=2", "ünïcode"]
        second = _python(FORWARD, tmp_path, *files)
        _out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        out, err = primary.communicate(timeout=30)
        assert primary.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == [files]
    finally:
        if primary.poll() is None:
            primary.kill()
            primary.communicate()


def test_in_process_instance_receives_from_a_real_subprocess(qtbot, tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    inst = SingleInstance()
    assert inst.name == server_name(tmp_path)
    assert inst.listen() and inst.is_listening()
    # The socket file is its owner's only.
    sock = Path(inst.socket_path())
    assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0, oct(sock.stat().st_mode)
    with qtbot.waitSignal(inst.received, timeout=20000) as blocker:
        second = _python(FORWARD, tmp_path, "a.py", "b.sh")
        # The event loop must run while the subprocess talks to us.
        qtbot.waitUntil(lambda: second.poll() is not None, timeout=20000)
    _out, err = second.communicate()
    assert second.returncode == 0, err
    assert blocker.args == [["a.py", "b.sh"]]
    # A second object for the same home cannot become the instance while this one is.
    other = SingleInstance(home=tmp_path)
    assert not other.listen()
    inst.close()
    # Once the first is gone, a new one can take over (nothing stale left behind).
    third = SingleInstance(home=tmp_path)
    assert third.listen()
    third.close()


def test_without_a_running_instance_try_forward_is_false(qtbot, tmp_path: Path) -> None:
    lone = SingleInstance(home=tmp_path)
    assert lone.try_forward(["x.py"], timeout_ms=300) is False
    assert lone.listen()  # it holds the lock now and serves
    # A different data home is a different instance, with its own name.
    other_home = tmp_path / "other"
    other_home.mkdir()
    other = SingleInstance(home=other_home)
    assert other.name != lone.name
    assert other.try_forward(["y.py"], timeout_ms=300) is False
    assert other.listen()
    other.close()
    lone.close()


def test_junk_on_the_socket_is_refused(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QByteArray
    from PySide6.QtNetwork import QLocalSocket

    inst = SingleInstance(home=tmp_path)
    assert inst.listen()
    got: list = []
    inst.received.connect(got.append)
    socket = QLocalSocket()
    socket.connectToServer(inst.name)
    qtbot.waitUntil(lambda: socket.state() == QLocalSocket.LocalSocketState.ConnectedState,
                    timeout=3000)
    socket.write(QByteArray(b'{"not": "a list"}\n'))
    qtbot.waitUntil(lambda: socket.bytesAvailable() > 0, timeout=3000)
    assert bytes(socket.readAll().data()) == b"error\n"
    assert got == []
    socket.abort()
    inst.close()

