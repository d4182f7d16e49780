"""Finds files under ``resources/`` whether Labdeck runs from source or a frozen build."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon


def resources_root() -> Path:
    """The ``resources/`` folder: beside ``sys._MEIPASS`` in a PyInstaller build, at the
    repository root from source, under ``<prefix>/share/labdeck`` for a pip/pipx install."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    source = Path(__file__).resolve().parents[3] / "resources"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "labdeck" / "resources"


def resource_path(name: str) -> Path:
    """Path of ``resources/<name>`` (see ``resources_root``)."""
    return resources_root() / name


def app_icon() -> QIcon:
    """The window icon; an empty icon (never an error) if the file is missing."""
    path = resource_path("icons/labdeck.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()
