"""The window's import dialog lists what ``labdeck hosts import-ssh-config`` imports: a real
~/.ssh/config with ``Include`` under a private HOME, read by both, gives the same hosts
with the same user, host name and port."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.core.hosts.cluster import ClusterMonitor
from app.core.hosts.registry import ConfigHost
from app.ui.cluster.import_hosts_dialog import ALIAS_ROLE, TARGET_ROLE, ImportHostsDialog
from app.ui.shell.main_window import MainWindow
from ssh_backend.hostspec import HostSpec
from tests.harness.gui_fakes import FakeLab
from tests.harness.labcli import LabCli

pytestmark = pytest.mark.gui


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.ssh/config includes conf.d/*.conf, as many lab setups do."""
    home = tmp_path / "user"
    conf_d = home / ".ssh" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "lab.conf").write_text("Host gpu3\n    HostName 10.0.0.3\n    User carol\n")
    (home / ".ssh" / "config").write_text(
        "Include conf.d/*.conf\n"
        "Host gpu1 gpu2\n    HostName %h.lab.example\n    Port 2222\n"
        "Host *.lab !bastion gpu?x\n    User nobody\n"
        "Match originalhost gpu2\n    User bob\n"
        "Host bad$name\n    HostName 10.0.0.9\n"
        "Host *\n    User alice\n"
    )
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def window(qtbot):
    monitor = ClusterMonitor(FakeLab())
    window = MainWindow(monitor)
    qtbot.addWidget(window)
    yield window
    window.bridge.detach()
    window.cluster_view.stop()
    monitor.stop()


def _open_import(qtbot, window: MainWindow) -> ImportHostsDialog:
    dialog = window.open_import()
    # The list arrives through a queued signal: it cannot come before this wait starts.
    with qtbot.waitSignal(dialog.hosts_listed, timeout=5000):
        pass
    return dialog


def _rows(dialog: ImportHostsDialog) -> list[tuple[str, str, bool]]:
    items = [dialog.list.item(i) for i in range(dialog.list.count())]
    return [(item.data(ALIAS_ROLE), item.data(TARGET_ROLE),
             bool(item.flags() & Qt.ItemFlag.ItemIsEnabled)) for item in items]


def test_the_dialog_lists_included_hosts_as_ssh_resolves_them(
        qtbot, window: MainWindow, user_home: Path) -> None:
    window.monitor.add_host(HostSpec(name="renamed", ssh_alias="gpu2"))
    dialog = _open_import(qtbot, window)
    assert _rows(dialog) == [
        ("gpu3", "carol@10.0.0.3:22", True),  # from the included file
        ("gpu1", "alice@gpu1.lab.example:2222", True),
        ("gpu2", "bob@gpu2.lab.example:2222", False),  # imported before, under a new name
        ("bad$name", "", False),  # not a valid Labdeck name: never handed to ssh -G
    ]
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert "already added" in texts[2]
    assert "not a valid Labdeck host name" in texts[3] and "--ssh-alias" in texts[3]
    assert not dialog.ok_button.isEnabled()
    dialog.list.item(0).setCheckState(Qt.CheckState.Checked)
    assert dialog.ok_button.isEnabled() and dialog.selected_aliases() == ["gpu3"]
    dialog.ok_button.click()
    qtbot.waitUntil(lambda: window.monitor.host("gpu3") is not None, timeout=5000)
    view = window.monitor.host("gpu3")
    assert view is not None and view.spec == HostSpec(name="gpu3", ssh_alias="gpu3")


def test_cli_and_dialog_list_the_same_hosts(qtbot, window: MainWindow, user_home: Path,
                                            tmp_path: Path) -> None:
    dialog = _open_import(qtbot, window)
    listed = [(alias, target) for alias, target, usable in _rows(dialog) if usable]
    cli = LabCli(tmp_path, user_home=user_home)("hosts", "import-ssh-config")
    added = [line.removeprefix("added ").split(": ", 1) for line in cli.stdout.splitlines()]
    assert [(alias, target) for alias, target in added] == listed
    assert len(listed) == 3
    # The alias the dialog greys out is the one the CLI refuses, for the same reason.
    refused = dialog.list.item(3).text().split("  —  ", 1)[1]
    assert cli.returncode == 1 and cli.stderr.strip() == f"labdeck: {refused}"


def test_an_unreadable_config_is_shown_with_its_file_and_line(
        qtbot, window: MainWindow, user_home: Path) -> None:
    # Not 'Port ssh': ssh itself reads that as the service name, port 22.
    (user_home / ".ssh" / "conf.d" / "lab.conf").write_text("Host gpu3\n    Port 99999\n")
    dialog = _open_import(qtbot, window)
    conf = user_home / ".ssh" / "conf.d" / "lab.conf"
    assert dialog.message.text() in (
        f"Could not read ~/.ssh/config: {conf}:2: Bad port '99999'.",  # ssh -G
        f"Could not read ~/.ssh/config: {conf}:2: Port must be 1-65535, got '99999'")
    assert dialog.list.count() == 0 and not dialog.ok_button.isEnabled()


def test_listing_runs_off_the_gui_thread(qtbot) -> None:
    seen: list[str] = []

    def list_hosts() -> list[ConfigHost]:
        seen.append(threading.current_thread().name)
        return [ConfigHost("gpu1", "alice", "gpu1.lab", 22)]

    dialog = ImportHostsDialog(list_hosts)
    qtbot.addWidget(dialog)
    assert dialog.message.text() == "Reading ~/.ssh/config…"
    with qtbot.waitSignal(dialog.hosts_listed, timeout=5000):
        pass
    assert seen == ["labdeck-ssh-config"]
    assert _rows(dialog) == [("gpu1", "alice@gpu1.lab:22", True)]
