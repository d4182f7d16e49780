"""Where Labdeck keeps its files, and how private files are created.

Everything lives under one home: ``$LABDECK_HOME`` when set (tests, scripts and the demo
lab use this), else the platform's user data dir. Files are private (0600, dirs 0700).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import platformdirs

APP_NAME = "labdeck"


def home() -> Path:
    """The data directory, created private on first use."""
    override = os.environ.get("LABDECK_HOME")
    path = Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP_NAME))
    ensure_private_dir(path)
    return path


def store_path() -> Path:
    return home() / "labdeck.sqlite3"


def known_hosts_path() -> Path:
    """Host keys the user accepted in Labdeck (hashed, one per line)."""
    return home() / "known_hosts"


def log_dir() -> Path:
    override = os.environ.get("LABDECK_HOME")
    path = Path(override) / "logs" if override else Path(platformdirs.user_log_dir(APP_NAME))
    ensure_private_dir(path)
    return path


def system_known_hosts() -> list[Path]:
    return [Path("~/.ssh/known_hosts").expanduser()]


def user_ssh_config() -> Path:
    return Path("~/.ssh/config").expanduser()


def ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def touch_private(path: Path) -> None:
    """Create ``path`` as an empty 0600 file if missing, and tighten it if it exists.

    An existing file is never opened here: closing any descriptor of an SQLite database
    drops every POSIX lock this process holds on it, including those of a live connection
    in another thread (sqlite.org/howtocorrupt.html, section 2.2).
    """
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise IsADirectoryError(errno.EISDIR, "it exists and is not a file", str(path)) \
                from None
        if mode & 0o077:
            path.chmod(0o600)
        return
    os.close(fd)
