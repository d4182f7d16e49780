"""The add-host dialog checks what is typed by the host registry's rules: one table of
names and addresses goes through both, and they agree on every entry, message included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog

from app.core.hosts import registry as hosts
from app.core.hosts.cluster import ClusterMonitor
from app.ui.cluster.add_host_dialog import AddHostDialog
from app.ui.shell.main_window import MainWindow
from tests.harness.gui_fakes import FakeLab

pytestmark = pytest.mark.gui

# Entries where the old dialog and the registry disagreed come first in each table.
ADDRESSES = [
    "alice@gpu_2.lab",  # underscores: ssh_config aliases and some DNS names have them
    "alice$@gpu2",  # '$' in a user name: never for ssh
    "fe80::1",  # a bare IPv6 address (without a port)
    "a@b@gpu2",
    "alice@gpu2.lab:2222",
    "gpu1",
    "192.168.1.10:22",
    "[2001:db8::1]:22",
    "[2001:db8::1",
    "",
    "alice@",
    "@gpu2.lab",
    "alice@gpu2.lab:",
    "alice@gpu2.lab:ssh",
    "alice@gpu2.lab:70000",
    "alice@gpu2.lab:0",
    "alice@-oProxyCommand=x",
    "-oProxyCommand=x@gpu2",
    "-gpu2",
    "alice@gpu 2",
    " gpu1",
    "gpu1;reboot",
    "gpü.lab",
]
NAMES = [
    "a" * 64,  # one past the registry's limit
    "a" * 63,
    "gpu1-b",
    "gpu_2.x",
    "-x",
    ".x",
    "_x",
    "has space",
    "gpü",
    "x;y",
]


def _core_message(check: Callable[[], object]) -> str | None:
    try:
        check()
    except ValueError as exc:
        return str(exc)
    return None


@pytest.fixture
def dialog(qtbot):
    d = AddHostDialog(lambda: {"gpu1"})
    qtbot.addWidget(d)
    d.show()
    return d


def _assert_refused(dialog: AddHostDialog) -> None:
    assert not dialog.ok_button.isEnabled()
    dialog.accept()  # Enter/OK must refuse too
    assert dialog.result() != QDialog.DialogCode.Accepted and dialog.isVisible()


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_dialog_takes_an_address_exactly_when_the_registry_does(dialog, address: str) -> None:
    dialog.name_edit.setText("named")
    dialog.address_edit.setText("typed over")  # as a user edits: "" is a text typed too
    dialog.address_edit.setText(address)
    expected = _core_message(lambda: hosts.parse_ssh_target(address))
    if expected is None:
        assert dialog.ok_button.isEnabled() and not dialog.address_error.isVisible()
        user, host, port = hosts.parse_ssh_target(address)
        spec = dialog.spec()
        assert (spec.user, spec.hostname, spec.port) == (user, host, port)
        return
    assert dialog.address_error.text() == expected
    assert dialog.address_error.isVisible()
    _assert_refused(dialog)


@pytest.mark.parametrize("name", NAMES)
def test_the_dialog_takes_a_name_exactly_when_the_registry_does(dialog, name: str) -> None:
    dialog.address_edit.setText("alice@gpu2.lab")
    dialog.name_edit.setText("typed over")
    dialog.name_edit.setText(name)
    expected = _core_message(lambda: hosts.validate_host_name(name))
    if expected is None:
        assert dialog.ok_button.isEnabled() and not dialog.name_error.isVisible()
        assert dialog.spec().name == name
        return
    assert dialog.name_error.text() == expected
    assert dialog.name_error.isVisible()
    _assert_refused(dialog)


def test_a_name_the_registry_refuses_shows_what_to_do(dialog) -> None:
    dialog.address_edit.setText("alice@gpu2.lab")
    dialog.name_edit.setText("a" * 64)
    assert "use 1 to 63 letters, digits, '.', '_' or '-'" in dialog.name_error.text()
    _assert_refused(dialog)
    dialog.name_edit.setText("a" * 63)
    assert dialog.ok_button.isEnabled() and not dialog.name_error.isVisible()


def test_good_address_gives_the_registrys_spec(dialog, qtbot, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key")
    dialog.address_edit.setText("alice@gpu2.lab:2222")
    dialog.key_edit.setText(str(key))
    assert dialog.ok_button.isEnabled()
    assert not dialog.address_error.isVisible() and not dialog.key_error.isVisible()
    assert dialog.spec() == hosts.spec_from_args("gpu2", "alice@gpu2.lab:2222", str(key))
    with qtbot.waitSignal(dialog.accepted, timeout=1000):
        dialog.ok_button.click()
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_an_ip_address_is_its_own_default_name(dialog) -> None:
    dialog.address_edit.setText("10.0.0.7")
    assert dialog.ok_button.isEnabled() and dialog.spec().name == "10.0.0.7"
    # An IPv6 address makes no valid name: the name's problem shows, not just a dead OK.
    dialog.address_edit.setText("[2001:db8::1]:22")
    assert dialog.name_error.isVisible()
    assert dialog.name_error.text() == _core_message(
        lambda: hosts.validate_host_name("2001:db8::1"))
    _assert_refused(dialog)
    dialog.name_edit.setText("v6")
    assert dialog.ok_button.isEnabled() and dialog.spec().hostname == "2001:db8::1"


def test_key_files_are_checked_by_the_registry(dialog, tmp_path: Path) -> None:
    dialog.address_edit.setText("gpu2.lab")
    public = tmp_path / "id_ed25519.pub"
    public.write_text("ssh-ed25519 AAAA")
    for key in (tmp_path / "nope", tmp_path, public):
        dialog.key_edit.setText(str(key))
        assert dialog.key_error.text() == _core_message(lambda k=key: hosts.check_key_file(k))
        assert dialog.key_error.isVisible() and not dialog.ok_button.isEnabled()
    dialog.key_edit.setText("")  # no key file: ssh's defaults and the agent
    assert dialog.ok_button.isEnabled() and dialog.spec().key_filename is None


def test_name_must_be_unique(dialog) -> None:
    dialog.address_edit.setText("gpu1.lab")  # name defaults to "gpu1", which exists
    assert dialog.name_error.text() == "a host named 'gpu1' already exists; choose another name"
    assert not dialog.ok_button.isEnabled()
    dialog.name_edit.setText("gpu1-b")
    assert dialog.ok_button.isEnabled()


def test_the_window_adds_what_the_dialog_accepted(qtbot) -> None:
    monitor = ClusterMonitor(FakeLab())
    window = MainWindow(monitor)
    qtbot.addWidget(window)
    try:
        dialog = window.open_add_host()
        dialog.address_edit.setText("alice@gpu_2.lab:2222")
        dialog.ok_button.click()
        qtbot.waitUntil(lambda: monitor.host("gpu_2") is not None, timeout=5000)
        view = monitor.host("gpu_2")
        assert view is not None
        assert view.spec == hosts.spec_from_args("gpu_2", "alice@gpu_2.lab:2222")
    finally:
        window.bridge.detach()
        window.cluster_view.stop()
        monitor.stop()
