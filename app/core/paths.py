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
    """Create ``path`` and any missing parents as 0700 folders.

    A folder that already exists is left exactly as it is: it may be the user's own
    choice (``LABDECK_HOME=/tmp/x``), or shared (``/tmp``), and changing another folder's
    mode breaks whoever else uses it. Folders made here are private from birth (mkdir's
    mode is only ever narrowed by the umask), and every file Labdeck writes is 0600.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile by another process; not ours to change
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "it exists and is not a folder", str(path))


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
