"""The "Add host…" dialog: a name, ``[user@]host[:port]`` and an optional key file, each
checked as it is typed with a message that says exactly what is wrong."""

from __future__ import annotations

import os
import re
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

from app.ui.plain_text import PlainLabel
from ssh_backend.hostspec import HostSpec

ERROR_STYLE = "color: #c62828;"
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\$?")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_address(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` → (user, host, port); ValueError says what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("Enter the host as [user@]host[:port], e.g. alice@gpu1.lab:2222.")
    if any(c.isspace() for c in text):
        raise ValueError("The address must not contain spaces.")
    user: str | None = None
    if "@" in text:
        if text.count("@") > 1:
            raise ValueError("Use at most one @ (user@host).")
        user, text = text.split("@", 1)
        if not user:
            raise ValueError("The user name before @ is empty.")
        if not _USER_RE.fullmatch(user):
            raise ValueError(
                f"User name “{user}” may only contain letters, digits, '.', '_' and '-' "
                "(and not start with '-' or '.')."
            )
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError("An IPv6 address in [brackets] is missing its ']'.")
        if rest and not rest.startswith(":"):
            raise ValueError("After ']' only ':port' may follow.")
        port_text = rest[1:] if rest else None
        if not _IPV6_RE.fullmatch(host) or ":" not in host:
            raise ValueError(f"“{host}” is not an IPv6 address.")
    else:
        if text.count(":") > 1:
            raise ValueError("Write an IPv6 address in brackets: [2001:db8::1]:22.")
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if not host:
            raise ValueError("The host name is empty.")
        if not _HOST_RE.fullmatch(host):
            raise ValueError(
                f"Host name “{host}” is not valid: use letters, digits, '-' and '.', "
                "or an IP address."
            )
    port: int | None = None
    if port_text is not None:
        if not port_text:
            raise ValueError("The port after ':' is empty.")
        if not port_text.isdigit():
            raise ValueError(f"Port “{port_text}” is not a number.")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"Port {port} is out of range: use 1 to 65535.")
    return user, host, port


def check_key_file(text: str) -> str | None:
    """The problem with key file ``text`` (an empty one means "use the defaults"), or None."""
    if not text.strip():
        return None
    path = Path(text.strip()).expanduser()
    if not path.exists():
        return f"Key file not found: {path}"
    if path.is_dir():
        return f"{path} is a folder, not a key file."
    if not os.access(path, os.R_OK):
        return f"Key file is not readable: {path} (check its permissions)."
    return None


def check_name(name: str, existing: Collection[str]) -> str | None:
    if not name:
        return "Enter a name for this host."
    if not _NAME_RE.fullmatch(name):
        return "A name may use letters, digits, '.', '_' and '-' (up to 64, no spaces)."
    if name in existing:
        return f"A host named “{name}” already exists: choose another name."
    return None


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
        name = self.name_edit.text().strip()
        if name:
            return name
        try:
            _user, host, _port = parse_address(self.address_edit.text())
        except ValueError:
            return ""
        return host.split(".")[0] if not host.replace(".", "").isdigit() else host

    def validate(self) -> bool:
        """Show each field's problem (once touched) and enable OK only when all is well."""
        problems: dict[str, str | None] = {"address": None, "name": None, "key": None}
        try:
            parse_address(self.address_edit.text())
        except ValueError as exc:
            problems["address"] = str(exc)
        if problems["address"] is None or self.name_edit.text().strip():
            problems["name"] = check_name(self.effective_name(), self._existing_names())
        problems["key"] = check_key_file(self.key_edit.text())
        for key, label in (("address", self.address_error), ("name", self.name_error),
                           ("key", self.key_error)):
            message = problems[key]
            show = message is not None and (key in self._touched or key == "key")
            label.setText(message or "")
            label.setVisible(bool(show))
        ok = all(p is None for p in problems.values())
        self.ok_button.setEnabled(ok)
        return ok

    def accept(self) -> None:
        self._touched.update({"address", "name", "key"})
        if self.validate():
            super().accept()

    def spec(self) -> HostSpec:
        user, host, port = parse_address(self.address_edit.text())
        key = self.key_edit.text().strip()
        return HostSpec(name=self.effective_name(), hostname=host, port=port, user=user,
                        key_filename=str(Path(key).expanduser()) if key else None)
