"""The Lab page: the lab at a glance, as the hosts' lab boards show it (who holds GPUs,
their GPU-hours, who waits and since when, fair shares, reservations, GPUs held but
idle).

The summary is the core's (``app.core.queue.labsummary``, the same as ``labdeck lab``), built
from what the dispatcher's ``LabWatch`` last read, refreshed every few seconds while the
page is shown. Names of people, notes and run ids are other people's text: plain cells.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.queue.labsummary import idle_text, lab_summary, minutes_text
from app.ui.common.plain_text import PlainLabel, display_text

REFRESH_MS = 5000
Summary = Callable[[], dict[str, Any] | None]


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setAlternatingRowColors(True)
    return table


def _section(title: str) -> PlainLabel:
    label = PlainLabel(title)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(display_text(text, 300))
            table.setItem(r, c, item)


def _ago(since: float | None, now: float) -> str:
    return "—" if since is None else minutes_text(now - since)


class LabPage(QWidget):
    """See the module docstring. ``summary()`` gives the core's summary, or None when no
    board has been read yet."""

    def __init__(self, summary: Summary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._summary = summary
        self.headline = PlainLabel("Reading the hosts' lab boards…")
        self.headline.setObjectName("labHeadline")
        self.users = _table(["User", "GPUs held", "GPU-h day", "GPU-h week", "Waits for",
                             "Waiting", "Fair share"])
        self.reservations = _table(["Host", "GPU", "Reservation"])
        self.idle = _table(["Host", "GPU", "Held by", "Run", "Idle for"])
        layout = QVBoxLayout(self)
        layout.addWidget(self.headline)
        for title, table, stretch in (
                ("People", self.users, 3),
                ("Reservations — every Labdeck of the lab honours them", self.reservations, 2),
                ("GPUs held but idle (at 0 % now)", self.idle, 2)):
            layout.addSpacing(6)
            layout.addWidget(_section(title))
            layout.addWidget(table, stretch)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def refresh(self) -> None:
        if not self.isVisible() and self.users.rowCount():
            return  # hidden: nothing to update until it is shown again
        found = self._summary()
        if found is None:
            self.headline.setText("No lab board read yet: hosts appear here once online.")
            return
        now = time.time()
        users = found["users"]
        waiting = sum(1 for u in users if u["gpus_wanted"])
        self.headline.setText(
            f"{found['gpus']} GPUs on {len(found['hosts'])} host(s) · "
            f"{sum(u['gpus_held'] for u in users)} held · {waiting} "
            f"{'person waits' if waiting == 1 else 'people wait'} · "
            f"{len(found['reservations'])} reserved")
        _fill(self.users, [[u["user"], str(u["gpus_held"]), f"{u['gpu_hours_day']:g}",
                            f"{u['gpu_hours_week']:g}", str(u["gpus_wanted"] or "—"),
                            _ago(u["waiting_since"], now), f"{u['fair_share_gpus']:g}"]
                           for u in users])
        _fill(self.reservations, [[r["host"], str(r["gpu"] if r["gpu"] is not None
                                                  else r["gpu_uuid"]), r["text"]]
                                  for r in found["reservations"]])
        _fill(self.idle, [[i["host"], str(i["gpu"]), str(i["user"] or "?"),
                           str(i["run"] or ""), idle_text(i, found["idle_after_min"])]
                          for i in found["idle_holders"]])

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()


def install_lab_page(window: Any, ctx: Any) -> LabPage | None:
    """The Lab tab, fed by the dispatcher's lab boards (none without services)."""
    services = ctx.services
    if services is None:
        return None
    watch, monitor = services.dispatcher.lab, services.monitor

    def summary() -> dict[str, Any] | None:
        boards = watch.boards()
        return lab_summary(monitor.hosts(), boards, monitor.idle_since) if boards else None

    page = LabPage(summary)
    window.add_page(page, "Lab")
    return page
