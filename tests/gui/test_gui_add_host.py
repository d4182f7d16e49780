"""Add-host and import dialogs: each bad input gets its own message and OK stays off."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog

from app.ui.add_host_dialog import AddHostDialog
from app.ui.import_hosts_dialog import ImportHostsDialog, aliases_from_ssh_config

pytestmark = pytest.mark.gui


@pytest.fixture
def dialog(qtbot):
    d = AddHostDialog(lambda: {"gpu1"})
    qtbot.addWidget(d)
    d.show()
    return d


@pytest.mark.parametrize(("address", "message"), [
    ("alice@", "The host name is empty."),
    ("@gpu2.lab", "The user name before @ is empty."),
    ("a@b@gpu2", "Use at most one @"),
    ("alice@gpu2.lab:", "The port after ':' is empty."),
    ("alice@gpu2.lab:ssh", "Port “ssh” is not a number."),
    ("alice@gpu2.lab:70000", "Port 70000 is out of range"),
    ("alice@gpu2.lab:0", "Port 0 is out of range"),
    ("alice@-oProxyCommand=x", "is not valid"),
    ("-oProxyCommand=x@gpu2", "User name “-oProxyCommand=x” may only contain"),
    ("alice@gpu 2", "must not contain spaces"),
    ("alice@gpu_2.lab", "Host name “gpu_2.lab” is not valid"),
    ("fe80::1", "Write an IPv6 address in brackets"),
])
def test_bad_address_is_refused_with_its_reason(dialog, address: str, message: str) -> None:
    dialog.address_edit.setText(address)
    assert message in dialog.address_error.text()
    assert dialog.address_error.isVisible()
    assert not dialog.ok_button.isEnabled()
    dialog.accept()  # Enter/OK must refuse too
    assert dialog.result() != QDialog.DialogCode.Accepted and dialog.isVisible()


def test_good_address_gives_a_spec(dialog, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key")
    dialog.address_edit.setText("alice@gpu2.lab:2222")
    dialog.key_edit.setText(str(key))
    assert dialog.ok_button.isEnabled()
    assert not dialog.address_error.isVisible() and not dialog.key_error.isVisible()
    spec = dialog.spec()
    assert (spec.name, spec.user, spec.hostname, spec.port, spec.key_filename) == (
        "gpu2", "alice", "gpu2.lab", 2222, str(key))
    dialog.address_edit.setText("[2001:db8::1]:22")
    dialog.name_edit.setText("v6")
    assert dialog.ok_button.isEnabled() and dialog.spec().hostname == "2001:db8::1"


def test_missing_or_folder_key_file_is_refused(dialog, tmp_path: Path) -> None:
    dialog.address_edit.setText("gpu2.lab")
    dialog.key_edit.setText(str(tmp_path / "nope"))
    assert dialog.key_error.text() == f"Key file not found: {tmp_path / 'nope'}"
    assert not dialog.ok_button.isEnabled()
    dialog.key_edit.setText(str(tmp_path))
    assert "is a folder, not a key file" in dialog.key_error.text()
    assert not dialog.ok_button.isEnabled()
    dialog.key_edit.setText("")
    assert dialog.ok_button.isEnabled()


def test_name_must_be_unique(dialog) -> None:
    dialog.address_edit.setText("gpu1.lab")  # name defaults to "gpu1", which exists
    assert "A host named “gpu1” already exists" in dialog.name_error.text()
    assert not dialog.ok_button.isEnabled()
    dialog.name_edit.setText("gpu1-b")
    assert dialog.ok_button.isEnabled()
    dialog.name_edit.setText("has space")
    assert "no spaces" in dialog.name_error.text() and not dialog.ok_button.isEnabled()


def test_import_lists_aliases_and_returns_the_ticked(qtbot, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n  User x\nHost gpu1 gpu2\n  HostName 10.0.0.2\n"
                      "host gpu3 !bad\nMatch all\n")
    aliases = aliases_from_ssh_config(config)
    assert aliases == ["gpu1", "gpu2", "gpu3"]
    d = ImportHostsDialog(lambda: aliases, existing={"gpu1"})
    qtbot.addWidget(d)
    assert not d.ok_button.isEnabled()
    from PySide6.QtCore import Qt
    items = [d.list.item(i) for i in range(d.list.count())]
    assert "already added" in items[0].text()
    assert not items[0].flags() & Qt.ItemFlag.ItemIsEnabled
    items[2].setCheckState(Qt.CheckState.Checked)
    assert d.ok_button.isEnabled() and d.selected_aliases() == ["gpu3"]


def test_import_shows_an_unreadable_config(qtbot) -> None:
    def broken() -> list[str]:
        raise PermissionError("Permission denied: '/home/x/.ssh/config'")

    d = ImportHostsDialog(broken, existing=set())
    qtbot.addWidget(d)
    assert "Could not read ~/.ssh/config: Permission denied" in d.message.text()
    assert not d.ok_button.isEnabled()
