"""The ``labdeck`` command line, run as a real subprocess against a private LABDECK_HOME."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import app
from tests.harness.labcli import REPO, LabCli


@pytest.fixture
def labdeck(tmp_path: Path) -> LabCli:
    """``python -m app …`` with its own LABDECK_HOME and HOME (no user files leak in)."""
    return LabCli(tmp_path)


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("labdeck: ")
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version(labdeck: LabCli) -> None:
    result = labdeck("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"labdeck {app.__version__}"


def test_hosts_add_ls_rm_round_trip(labdeck: LabCli, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    added = labdeck("hosts", "add", "gpu1", "--ssh", "alice@10.0.0.7:2222", "--key", str(key),
                    "--jump", "bob@bastion:22")
    assert added.returncode == 0, added.stderr
    assert "added gpu1: alice@10.0.0.7:2222" in added.stdout
    assert "labdeck hosts trust gpu1" in added.stdout
    assert labdeck("hosts", "add", "sim1", "--ssh", "[::1]:22", "--simulate-gpus", "4",
                   "--interval", "0.5").returncode == 0

    listed = labdeck("hosts", "ls")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TARGET", "JUMP", "KEY", "GPUS", "EVERY"]
    assert lines[1].split()[:3] == ["gpu1", "alice@10.0.0.7:2222", "bob@bastion:22"]
    assert "sim 4 GPUs" in lines[2] and "[::1]:22" in lines[2]

    data = json.loads(labdeck("hosts", "ls", "--json").stdout)["hosts"]
    assert [h["name"] for h in data] == ["gpu1", "sim1"]
    assert data[0] | {"key_filename": None} == {
        "name": "gpu1", "target": "alice@10.0.0.7:2222", "user": "alice",
        "hostname": "10.0.0.7", "port": 2222, "ssh_alias": None, "key_filename": None,
        "proxy_jump": ["bob@bastion:22"], "local": False, "backend": "auto", "sim_gpus": 0,
        "interval_s": 1.0, "simulated": False,
    }
    assert data[0]["key_filename"] == str(key)
    assert data[1]["simulated"] is True and data[1]["sim_gpus"] == 4

    removed = labdeck("hosts", "rm", "gpu1")
    assert removed.returncode == 0 and "removed gpu1" in removed.stdout
    again = json.loads(labdeck("hosts", "ls", "--json").stdout)["hosts"]
    assert [h["name"] for h in again] == ["sim1"]
    store = labdeck.home / "labdeck.sqlite3"
    assert store.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["hosts", "add", "gpu1", "--ssh", "gpu1;reboot"], ["contains ';'", "[user@]host[:port]"]),
        (["hosts", "add", "gpu1", "--ssh", "gpu1:70000"], ["number from 1 to 65535"]),
        (["hosts", "add", "gpu 1", "--ssh", "gpu1"], ["host name 'gpu 1' is not valid"]),
        (["hosts", "add", "gpu1"], ["say how to reach host 'gpu1'"]),
        (["hosts", "add", "gpu1", "--ssh", "h", "--key", "/nonexistent/id_rsa"],
         ["key file /nonexistent/id_rsa does not exist"]),
        (["hosts", "rm", "ghost"], ["no host named 'ghost'"]),
        (["hosts", "frobnicate"], ["invalid choice", "--help"]),
        (["hosts", "add", "gpu1", "--ssh", "h", "--local"], ["not allowed with argument"]),
        (["gpus", "--timeout", "-1"], ["timeout must be more than 0"]),
        (["--screenshot", "/tmp/x.png"], ["--screenshot only works with --self-test"]),
        (["hosts", "import-ssh-config", "--config", "{home}/bad_config"], ["bad_config:2"]),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    labdeck: LabCli, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    (tmp_path / "bad_config").write_text("Host x\n    Port seventy\n")
    args = [a.replace("{home}", str(tmp_path)) for a in args]
    assert_user_error(labdeck(*args), *needles)


def test_duplicate_add_is_refused(labdeck: LabCli) -> None:
    assert labdeck("hosts", "add", "gpu1", "--ssh", "gpu1").returncode == 0
    assert_user_error(labdeck("hosts", "add", "gpu1", "--ssh", "other"),
                      "a host named 'gpu1' already exists")


def test_a_store_from_a_newer_labdeck_is_refused_clearly(labdeck: LabCli) -> None:
    assert labdeck("hosts", "ls").returncode == 0
    with sqlite3.connect(labdeck.home / "labdeck.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")
    assert_user_error(labdeck("hosts", "ls"), "newer Labdeck (schema 99", "upgrade Labdeck")


def test_import_ssh_config(labdeck: LabCli) -> None:
    ssh_dir = labdeck.user_home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text("Host gpu1 gpu2\n    User alice\nHost *\n    Port 22\n")
    result = labdeck("hosts", "import-ssh-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["added gpu1: alice@gpu1:22", "added gpu2: alice@gpu2:22"]
    listed = json.loads(labdeck("hosts", "ls", "--json").stdout)["hosts"]
    assert [(h["name"], h["ssh_alias"]) for h in listed] == [("gpu1", "gpu1"), ("gpu2", "gpu2")]
    second = labdeck("hosts", "import-ssh-config")
    assert second.returncode == 0 and "already known, skipped: gpu1, gpu2" in second.stdout


def test_trust_without_a_terminal_needs_yes(labdeck: LabCli) -> None:
    assert labdeck("hosts", "add", "gpu1", "--ssh", "127.0.0.1:1").returncode == 0
    assert_user_error(labdeck("hosts", "trust", "gpu1"), "not a terminal", "--yes")
    assert_user_error(labdeck("hosts", "trust", "ghost", "--yes"), "no host named 'ghost'")


def test_gpus_with_no_hosts(labdeck: LabCli) -> None:
    result = labdeck("gpus", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"hosts": []}
    assert "labdeck hosts add" in result.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gpus_reports_an_unreachable_host_and_exits_1(labdeck: LabCli) -> None:
    port = _closed_port()  # nothing listens there: the connection is refused at once
    assert labdeck("hosts", "add", "down", "--ssh", f"127.0.0.1:{port}").returncode == 0
    result = labdeck("gpus", "--json", "--timeout", "10")
    assert result.returncode == 1, result.stderr
    (host,) = json.loads(result.stdout)["hosts"]
    assert host["name"] == "down" and host["state"] == "offline"
    assert host["gpus"] == [] and host["simulated"] is False and host["detail"]
    table = labdeck("gpus", "--timeout", "10")
    assert table.returncode == 1
    assert "down" in table.stdout and "offline" in table.stdout


def test_the_command_line_never_imports_qt(labdeck: LabCli) -> None:
    code = (
        "import sys; from app.cli.main import main; rc = main(['hosts', 'ls']); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph') "
        "or m.startswith('app.ui')); print('QT', bad); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=labdeck.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "QT []" in result.stdout


def test_a_store_path_that_cannot_be_created_is_a_user_error(labdeck: LabCli) -> None:
    (labdeck.home / "labdeck.sqlite3").mkdir(parents=True)
    assert_user_error(labdeck("hosts", "ls"), "cannot create the Labdeck store", "LABDECK_HOME")


def test_unexpected_errors_are_short_and_name_the_log(labdeck: LabCli) -> None:
    code = (
        "import app.cli.hosts_cmd as h\n"
        "def boom(args): raise RuntimeError('kaboom')\n"
        "h._ls = boom\n"
        "from app.cli.main import main\n"
        "raise SystemExit(main(['hosts', 'ls']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=labdeck.env,
                            capture_output=True, text=True, timeout=60)
    log = labdeck.home / "logs" / "labdeck.log"
    assert result.returncode == 70
    assert result.stderr.strip().splitlines() == [
        f"labdeck: unexpected error: RuntimeError: kaboom; details are in {log}"
    ]
    assert log.stat().st_mode & 0o777 == 0o600
    logged = log.read_text()
    assert "Traceback" in logged and "RuntimeError: kaboom" in logged


@pytest.mark.gui
def test_self_test_runs_through_the_entry_point(labdeck: LabCli, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    labdeck.env["QT_QPA_PLATFORM"] = "offscreen"
    result = labdeck("--self-test", "--screenshot", str(shot))
    assert result.returncode == 0, result.stderr
    assert "self-test passed" in result.stdout
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_window_actions_save_hosts_before_monitoring_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from app.core.lab import Lab
    from app.core.store import Store
    from ssh_backend.hostspec import HostSpec

    with Store.open() as store:
        lab = Lab.open(store)  # never started: nothing connects
        actions, monitor = lab.hosts, lab.monitor
        try:
            actions.add(HostSpec(name="gpu1", hostname="10.0.0.1"))
            with pytest.raises(ValueError, match="a host named 'gpu1' already exists"):
                actions.add(HostSpec(name="gpu1", hostname="10.0.0.2"))
            with pytest.raises(ValueError, match="host name 'bad name' is not valid"):
                actions.add(HostSpec(name="bad name"))
            with pytest.raises(ValueError, match="'gpu1' already exists"):
                actions.import_aliases(["gpu2", "gpu1", "gpu3"])
            assert [s.name for s in store.hosts()] == ["gpu1", "gpu2", "gpu3"]
            assert store.host("gpu2") == HostSpec(name="gpu2", ssh_alias="gpu2")
            assert monitor.names() == ["gpu1", "gpu2", "gpu3"]
        finally:
            monitor.stop()


def test_window_without_a_display_says_what_to_do(labdeck: LabCli) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        labdeck.env.pop(var, None)
    result = labdeck()
    assert result.returncode == 2
    assert "no display found" in result.stderr and "--self-test" in result.stderr
    assert "Traceback" not in result.stderr
