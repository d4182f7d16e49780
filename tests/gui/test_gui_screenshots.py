"""The screenshot script renders the cluster view at both sizes without errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from make_screenshots import render
from PySide6.QtGui import QImage

from app.ui.shell.selfcheck import is_blank

pytestmark = pytest.mark.gui


def test_screenshots_render(qtbot, tmp_path: Path) -> None:
    paths = render(tmp_path)
    sizes = {(QImage(str(p)).width(), QImage(str(p)).height()) for p in paths}
    assert {(1280, 800), (900, 700)} <= sizes
    assert not any(is_blank(QImage(str(p))) for p in paths)
