"""The "Import from ~/.ssh/config…" dialog: tick the ``Host`` aliases to monitor."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.add_host_dialog import ERROR_STYLE
from app.ui.plain_text import PlainLabel


class ImportHostsDialog(QDialog):
    def __init__(self, list_aliases: Callable[[], list[str]], existing: Collection[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import hosts from ~/.ssh/config")
        self.setObjectName("ImportHostsDialog")
        layout = QVBoxLayout(self)
        layout.addWidget(PlainLabel("Choose the hosts to monitor. Their connection settings "
                                    "are read from ~/.ssh/config at every connect."))
        self.list = QListWidget()
        layout.addWidget(self.list, 1)
        self.message = PlainLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

        try:
            aliases = list_aliases()
        except (OSError, ValueError) as exc:
            aliases = []
            self.message.setText(f"Could not read ~/.ssh/config: {exc}")
            self.message.setStyleSheet(ERROR_STYLE)
        else:
            if not aliases:
                self.message.setText("~/.ssh/config names no host (wildcard patterns such "
                                     "as 'Host *' are not hosts). Use Add host… instead.")
        for alias in aliases:
            item = QListWidgetItem(alias)
            if alias in existing:
                item.setText(f"{alias}  (already added)")
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setCheckState(Qt.CheckState.Unchecked)
            else:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Unchecked)
            item.setData(Qt.ItemDataRole.UserRole, alias)
            self.list.addItem(item)
        self.list.itemChanged.connect(self._update_ok)
        self._update_ok()
        self.resize(460, 420)

    def selected_aliases(self) -> list[str]:
        return [
            self.list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.list.count())
            if self.list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def _update_ok(self) -> None:
        self.ok_button.setEnabled(bool(self.selected_aliases()))


def aliases_from_ssh_config(path: Path) -> list[str]:
    """``Host`` names of an OpenSSH config, without patterns; a missing file names none.

    The fallback when no richer parser is wired in (it does not follow ``Include``).
    """
    if not path.is_file():
        return []
    aliases: list[str] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = raw.strip().split()
        if len(words) < 2 or words[0].lower() != "host":
            continue
        for word in words[1:]:
            if not any(c in word for c in "*?!") and word not in aliases:
                aliases.append(word)
    return aliases
