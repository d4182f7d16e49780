"""Window geometry, dock state, splitter sizes and header layout come back next time,
from a private INI file under LABDECK_HOME."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QLabel, QMainWindow, QSplitter, QTableView

from app.ui.shell.window_state import remember, save_now, settings_path

pytestmark = pytest.mark.gui


def _build(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(QLabel("left"))
    table = QTableView()
    model = QStandardItemModel(3, 4)
    table.setModel(model)
    splitter.addWidget(table)
    window.setCentralWidget(splitter)
    window.model = model  # keep it referenced
    return window, splitter, table.horizontalHeader()


def test_layout_is_restored_in_a_new_window(qtbot, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    window, splitter, header = _build(qtbot)
    assert not remember(window, "main")  # nothing saved yet
    remember(splitter, "main/splitter")
    remember(header, "main/runs-header")
    window.resize(720, 480)  # inside the offscreen 800×600 screen
    window.show()
    splitter.setSizes([500, 220])
    header.resizeSection(1, 177)
    header.moveSection(3, 0)
    sizes = splitter.sizes()
    save_now(window)
    save_now(splitter)
    save_now(header)
    window.close()
    path = settings_path()
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600

    again, splitter2, header2 = _build(qtbot)
    assert remember(again, "main")
    assert remember(splitter2, "main/splitter")
    assert remember(header2, "main/runs-header")
    again.show()
    assert (again.width(), again.height()) == (720, 480)
    assert splitter2.sizes() == sizes
    assert header2.sectionSize(1) == 177
    assert header2.logicalIndex(0) == 3


def test_splitter_move_is_saved_by_itself(qtbot, tmp_path: Path) -> None:
    ini = tmp_path / "state.ini"
    window, splitter, _header = _build(qtbot)
    remember(splitter, "s", ini)
    window.resize(800, 400)
    window.show()
    splitter.moveSplitter(200, 1)  # what a drag does: splitterMoved, then a delayed save
    qtbot.waitUntil(lambda: ini.is_file() and b"[s]" in ini.read_bytes(), timeout=3000)
    _w2, splitter2, _h2 = _build(qtbot)
    assert remember(splitter2, "s", ini)
