"""The Lab page: the core's lab summary (the hosts' boards) shown as plain tables."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.hosts.cluster import HostView
from app.core.queue.labsummary import lab_summary
from app.ui.lab.page import LabPage
from ssh_backend.hostspec import HostSpec
from ssh_backend.labboard import Board, Demand, LeaseHolder, Reservation, Usage
from ssh_backend.protocol import GpuReading, Sample
from ssh_backend.states import HostState

pytestmark = pytest.mark.gui
HOSTILE = "<img src=/dev/zero>"


def view(name: str, gpus: int, busy: set[int]) -> HostView:
    readings = tuple(
        GpuReading(index=i, uuid=f"GPU-{name}-{i}", util_pct=80.0 if i in busy else 0.0,
                   mem_used_mib=1.0, mem_total_mib=81559.0, temp_c=40.0, power_w=70.0,
                   power_limit_w=700.0, fan_pct=None)
        for i in range(gpus))
    return HostView(spec=HostSpec(name=name), state=HostState.ONLINE,
                    sample=Sample(seq=1, time=time.time(), gpus=readings))


def boards() -> dict[str, Board]:
    now = time.time()
    demand = (Demand("bob", 1, 3, now - 720), Demand(HOSTILE, 2, 1, now - 60))
    return {
        "team-box": Board(
            leases=(LeaseHolder("GPU-team-box-0", "alice", "r1", now - 3600),
                    LeaseHolder("GPU-team-box-1", "alice", "r2", now - 600),
                    LeaseHolder("GPU-team-box-2", "carol", "r3", now - 60)),
            demand=demand,
            reservations=(Reservation("GPU-team-box-3", "dana", now + 3 * 3600,
                                      f"manual debugging {HOSTILE}"),)),
        "big-box": Board(leases=(LeaseHolder("GPU-big-box-0", "alice", "r4", now - 60),),
                         demand=demand,
                         usage=(Usage("alice", 20.5, 130.0), Usage("erin", 0.0, 6.25))),
    }


def test_lab_page_shows_people_reservations_and_idle_holders(
    qtbot: QtBot, tmp_path: Path
) -> None:
    views = [view("team-box", 4, {0, 2}), view("big-box", 8, set())]
    # team-box GPU 1 has read 0 % for 45 min, but alice's lease on it is 10 min old.
    idle_from = {("team-box", 1): time.time() - 45 * 60, ("big-box", 0): None}
    page = LabPage(lambda: lab_summary(views, boards(), lambda h, i: idle_from.get((h, i))))
    qtbot.addWidget(page)
    page.resize(900, 640)
    page.show()
    qtbot.waitExposed(page)
    page.refresh()
    users = {page.users.item(r, 0).text(): [page.users.item(r, c).text() for c in range(7)]
             for r in range(page.users.rowCount())}
    # Held now, GPU-hours over the day and week (from the hosts' boards), waits for, since.
    assert users["alice"][1:5] == ["3", "20.5", "130", "—"]
    assert users["bob"][1:6] == ["0", "0", "0", "3", "12 min"]
    assert users["erin"][1:5] == ["0", "0", "6.2", "—"]  # used GPUs this week only
    assert HOSTILE in users  # a labmate's odd name is shown as the text it is
    assert page.reservations.item(0, 1).text() == "3"
    assert page.reservations.item(0, 2).text().startswith("reserved by dana until ")
    # Held but idle: alice's run on team-box GPU 1 and on big-box GPU 0 (0 % now).
    idle = sorted((page.idle.item(r, 0).text(), page.idle.item(r, 1).text(),
                   page.idle.item(r, 4).text()) for r in range(page.idle.rowCount()))
    assert idle == [("big-box", "0", "0 % now"), ("team-box", "1", "10 min")]
    assert "12 GPUs on 2 host(s) · 4 held · 2 people wait · 1 reserved" in page.headline.text()
    page.grab().save(str(tmp_path / "lab-page.png"))


def test_lab_page_before_any_board(qtbot: QtBot) -> None:
    page = LabPage(lambda: None)
    qtbot.addWidget(page)
    assert "No lab board read yet" in page.headline.text()
