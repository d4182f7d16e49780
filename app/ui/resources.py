"""Finds files under ``resources/`` whether Labdeck runs from source or a frozen build."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon


def resource_path(name: str) -> Path:
    """Path of ``resources/<name>``.

    A PyInstaller build unpacks data next to ``sys._MEIPASS``; from source the folder sits
    at the repository root, two levels above this package.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    base = Path(frozen_root) if frozen_root else Path(__file__).resolve().parents[2]
    return base / "resources" / name


def app_icon() -> QIcon:
    """The window icon; an empty icon (never an error) if the file is missing."""
    path = resource_path("icons/labdeck.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()
