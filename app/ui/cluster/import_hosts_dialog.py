"""The "Import from ~/.ssh/config…" dialog: tick the ``Host`` aliases to monitor.

The list is the one ``labdeck hosts import-ssh-config`` works from
(``app.core.hosts.registry.ssh_config_hosts``): ``Include``s followed, patterns left out, each
alias shown with the user, host and port the config gives it. Reading it may wait on
the disk or on DNS (``CanonicalizeHostname``), so it runs on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.hosts.registry import ConfigHost
from app.ui.cluster.add_host_dialog import ERROR_STYLE
from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import PlainLabel, display_text

# Item data: the alias (what ``selected_aliases`` returns) and where the config sends it.
ALIAS_ROLE = Qt.ItemDataRole.UserRole
TARGET_ROLE = Qt.ItemDataRole.UserRole + 1


class ImportHostsDialog(QDialog):
    """Lists ``list_hosts()`` (run on a worker) for the user to tick; OK imports those."""

    hosts_listed = Signal()  # the list is filled, or the message says why it is not

    def __init__(self, list_hosts: Callable[[], list[ConfigHost]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import hosts from ~/.ssh/config")
        self.setObjectName("ImportHostsDialog")
        layout = QVBoxLayout(self)
        layout.addWidget(PlainLabel("Choose the hosts to monitor. Their connection settings "
                                    "are read from ~/.ssh/config at every connect."))
        self.list = QListWidget()
        layout.addWidget(self.list, 1)
        self.message = PlainLabel("Reading ~/.ssh/config…")
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
        self.list.itemChanged.connect(self._update_ok)
        self._update_ok()
        self.resize(520, 420)
        # ``ssh -G`` per host: off the GUI thread. The thread ends once it has answered.
        self._worker = DataWorker("labdeck-ssh-config", self, idle_exit=True)
        self._worker.submit("list", list_hosts, self._on_listed, self._on_list_failed)

    def selected_aliases(self) -> list[str]:
        return [
            self.list.item(i).data(ALIAS_ROLE)
            for i in range(self.list.count())
            if self.list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def _update_ok(self) -> None:
        self.ok_button.setEnabled(bool(self.selected_aliases()))

    def _on_listed(self, found: list[ConfigHost]) -> None:
        self.message.setText("" if found else
                             "~/.ssh/config names no host (wildcard patterns such as "
                             "'Host *' are not hosts). Use Add host… instead.")
        for host in found:
            self.list.addItem(_item(host))
        self.hosts_listed.emit()

    def _on_list_failed(self, exc: BaseException) -> None:
        if not isinstance(exc, (OSError, ValueError)):
            raise exc  # a bug, not a config problem: the crash handler reports it
        self.message.setText(f"Could not read ~/.ssh/config: {exc}")
        self.message.setStyleSheet(ERROR_STYLE)
        self.hosts_listed.emit()


def _item(host: ConfigHost) -> QListWidgetItem:
    """One row: the alias and where it leads; unticked, and disabled with the reason when
    it is already added or cannot be imported."""
    if host.known:
        text, usable = f"{host.alias}  (already added)", False
    elif host.problem is not None:
        text, usable = f"{host.alias}  —  {host.problem}", False
    else:
        text, usable = f"{host.alias}  →  {host.target}", True
    item = QListWidgetItem(display_text(text))
    if usable:
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
    else:
        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
    item.setCheckState(Qt.CheckState.Unchecked)
    item.setData(ALIAS_ROLE, host.alias)
    item.setData(TARGET_ROLE, host.target)
    if host.resolved_by:
        item.setToolTip(display_text(f"Settings read by {host.resolved_by}"))
    return item
