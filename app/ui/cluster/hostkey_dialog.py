"""The trust-on-first-use dialog for an unknown host key, and the hard stop for a changed one."""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.common.plain_text import PlainLabel, html_paragraphs, html_text, rich_label


class KeyQuestion(Protocol):
    """What ``ssh_backend.hostkeys.HostKeyQuestion`` carries (read-only use here)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def key_type(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


def _host_port(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _keygen_name(key_type: str) -> str:
    """``ssh-ed25519`` → ``ed25519`` for the path of the server's public key file."""
    kind = key_type.removeprefix("ssh-")
    if kind.startswith("ecdsa"):
        return "ecdsa"
    return {"dss": "dsa"}.get(kind, kind)


class HostKeyDialog(QDialog):
    """Shows an unknown host key; accepted means "trust it and connect"."""

    def __init__(self, question: KeyQuestion, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.question = question
        self.setWindowTitle("Unknown host key")
        self.setObjectName("HostKeyDialog")
        layout = QVBoxLayout(self)

        heading = rich_label(
            f"<b>Labdeck has never connected to {html_text(question.host)} before.</b>"
        )
        heading.setWordWrap(True)
        layout.addWidget(heading)

        facts = rich_label(
            f"Host: {html_text(question.host)}<br>Port: {question.port}<br>"
            f"Key type: {html_text(question.key_type)}<br>Fingerprint:"
        )
        facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(facts)

        self.fingerprint_label = PlainLabel(question.fingerprint)
        self.fingerprint_label.setObjectName("fingerprint")
        self.fingerprint_label.setFont(
            QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        )
        self.fingerprint_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.fingerprint_label.setStyleSheet("padding: 6px; border: 1px solid palette(mid);")
        layout.addWidget(self.fingerprint_label)

        keyfile = html_text(f"/etc/ssh/ssh_host_{_keygen_name(question.key_type)}_key.pub")
        advice = rich_label(
            "Verify this fingerprint with your administrator before you trust it. "
            f"On the host they can print it with:<br><tt>ssh-keygen -lf {keyfile}</tt><br>"
            "If it does not match, press Cancel: someone may be intercepting the connection."
        )
        advice.setWordWrap(True)
        advice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(advice)

        buttons = QDialogButtonBox()
        self.trust_button = QPushButton("Trust and connect")
        self.cancel_button = QPushButton("Cancel")
        buttons.addButton(self.trust_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        # Enter must never trust a key by accident: Cancel is the default button.
        self.trust_button.setAutoDefault(False)
        self.cancel_button.setDefault(True)
        self.cancel_button.setFocus()
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)


def changed_key_text(host: str, port: int) -> str:
    target = _host_port(host, port)
    return (
        f"The host key of {host} is not the one Labdeck saw before. Either the host was "
        "reinstalled or its keys were regenerated, or someone is intercepting the "
        "connection. Labdeck will not connect.\n\n"
        "Ask your administrator whether the key changed. Only if they confirm it, remove "
        f"the old key with:\n\n    ssh-keygen -R '{target}'\n\n"
        "(for Labdeck's own list add -f with the path of its known_hosts file), then "
        "reconnect to be asked about the new key."
    )


def show_hostkey_changed(parent: QWidget | None, host: str, port: int = 22) -> QMessageBox:
    """Open (non-blocking) the hard stop for a changed host key; it has no way to continue."""
    box = QMessageBox(parent)
    box.setObjectName("HostKeyChangedBox")
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle("Host key CHANGED")
    # Rich on purpose (the bold line): then the informative text is HTML too, and the host
    # name in both is escaped.
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(f"<b>The host key of {html_text(host)} has CHANGED.</b>")
    box.setInformativeText(html_paragraphs(changed_key_text(host, port)))
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box

