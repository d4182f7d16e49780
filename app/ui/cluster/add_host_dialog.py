"""The "Add host…" dialog: a name, ``[user@]host[:port]`` and an optional key file, each
checked as it is typed by the host registry's own rules (``app.core.hosts.registry``), whose
message says what is wrong and how to write it, shown inline under the field."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.hosts import registry as hosts
from app.ui.common.plain_text import PlainLabel
from ssh_backend.hostspec import HostSpec

ERROR_STYLE = "color: #c62828;"


def default_name(address: str) -> str:
    """The name a host gets when none is typed: an IP address as it is, else the host
    name's first label (``gpu1`` for ``alice@gpu1.lab``); '' while the address is bad."""
    try:
        _user, host, _port = hosts.parse_ssh_target(address)
    except ValueError:
        return ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".")[0]
    return host


def _problem(check: Callable[[], object]) -> str | None:
    """The message of the ValueError that ``check`` raises, or None when it passes."""
    try:
        check()
    except ValueError as exc:
        return str(exc)
    return None


def _name_problem(name: str, existing: Collection[str]) -> str | None:
    problem = _problem(lambda: hosts.validate_host_name(name))
    if problem is None and name in existing:
        return f"a host named {name!r} already exists; choose another name"
    return problem


class AddHostDialog(QDialog):
    """Asks for one host; ``spec()`` is the result once the dialog was accepted."""

    def __init__(self, existing_names: Callable[[], Collection[str]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add host")
        self.setObjectName("AddHostDialog")
        self._existing_names = existing_names
        self._touched: set[str] = set()
        layout = QVBoxLayout(self)
        form = QFormLayout()

        self.address_edit = QLineEdit()
        self.address_edit.setPlaceholderText("alice@gpu1.lab.example:22")
        self.address_error = self._error_label("addressError")
        form.addRow("Address:", self.address_edit)
        form.addRow("", self.address_error)

        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("shown in Labdeck; defaults to the host name")
        self.name_error = self._error_label("nameError")
        form.addRow("Name:", self.name_edit)
        form.addRow("", self.name_error)

        key_row = QHBoxLayout()
        self.key_edit = QLineEdit()
        self.key_edit.setPlaceholderText("optional: ~/.ssh/id_ed25519 (else agent and defaults)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(browse)
        self.key_error = self._error_label("keyError")
        form.addRow("Key file:", key_row)
        form.addRow("", self.key_error)
        layout.addLayout(form)

        note = PlainLabel(
            "The host's key fingerprint is shown for you to confirm on first connect.")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Add host")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

        for key, edit in (("address", self.address_edit), ("name", self.name_edit),
                          ("key", self.key_edit)):
            edit.textChanged.connect(lambda _t, k=key: self._on_edited(k))
        self.setMinimumWidth(520)
        self.validate()

    def _error_label(self, name: str) -> QLabel:
        label = PlainLabel()
        label.setObjectName(name)
        label.setStyleSheet(ERROR_STYLE)
        label.setWordWrap(True)
        label.setVisible(False)
        return label

    def _browse(self) -> None:
        start = str(Path("~/.ssh").expanduser())
        path, _ = QFileDialog.getOpenFileName(self, "Choose a private key", start)
        if path:
            self.key_edit.setText(path)

    def _on_edited(self, key: str) -> None:
        self._touched.add(key)
        self.validate()

    def effective_name(self) -> str:
        return self.name_edit.text() or default_name(self.address_edit.text())

    def validate(self) -> bool:
        """Show each field's problem (once touched) and enable OK only when all is well."""
        address = self.address_edit.text()
        key = self.key_edit.text()
        problems: dict[str, str | None] = {
            "address": _problem(lambda: hosts.parse_ssh_target(address)),
            "name": None,
            # An empty key file means ssh's defaults and the agent, as with ssh itself.
            "key": _problem(lambda: hosts.check_key_file(key)) if key else None,
        }
        if problems["address"] is None or self.name_edit.text():
            problems["name"] = _name_problem(self.effective_name(), self._existing_names())
        # A name taken from the address is checked once the address was typed: an IPv6
        # address, say, makes no name, and OK must not stay off without a word.
        shown = self._touched | ({"name"} if "address" in self._touched else set()) | {"key"}
        for field, label in (("address", self.address_error), ("name", self.name_error),
                             ("key", self.key_error)):
            message = problems[field]
            label.setText(message or "")
            label.setVisible(message is not None and field in shown)
        ok = all(p is None for p in problems.values())
        self.ok_button.setEnabled(ok)
        return ok

    def accept(self) -> None:
        self._touched.update({"address", "name", "key"})
        if self.validate():
            super().accept()

    def spec(self) -> HostSpec:
        """The host as the registry builds it from what was typed (ValueError if invalid)."""
        key = self.key_edit.text()
        return hosts.spec_from_args(self.effective_name(), self.address_edit.text(),
                                    key or None)
