"""``run_self_test`` renders the real window over simulated hosts and checks the image."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from app.ui.shell.selfcheck import is_blank
from app.ui.shell.selftest import run_self_test

pytestmark = pytest.mark.gui


def test_self_test_passes_and_writes_a_screenshot(qtbot, tmp_path: Path, capsys) -> None:
    shot = tmp_path / "shot.png"
    assert run_self_test(shot) == 0
    assert "self-test passed" in capsys.readouterr().out
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1280, 800)
    assert not is_blank(image)


def test_blank_detection(qtbot) -> None:
    image = QImage(64, 32, QImage.Format.Format_ARGB32)
    image.fill(0xFFEFEFEF)
    assert is_blank(image)
    image.setPixel(10, 10, 0xFF000000)
    assert not is_blank(image)
