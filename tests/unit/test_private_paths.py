"""Labdeck's folders: its own are created private, anyone else's keep their mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import paths
from app.core.store import Store


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_in_a_shared_folder_leaves_its_mode(tmp_path: Path, open_umask: None) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    store = Store.open(shared / "bench.sqlite3")
    store.close()
    assert _mode(shared) == 0o1777
    assert _mode(shared / "bench.sqlite3") == 0o600


def test_labdeck_home_that_exists_keeps_its_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    mine = tmp_path / "my-folder"
    mine.mkdir()
    mine.chmod(0o755)
    monkeypatch.setenv("LABDECK_HOME", str(mine))
    assert paths.home() == mine
    paths.touch_private(paths.store_path())
    assert _mode(mine) == 0o755
    assert _mode(paths.store_path()) == 0o600


def test_folders_labdeck_creates_are_private_under_an_open_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    outer = tmp_path / "a"
    home = outer / "b" / "c"
    monkeypatch.setenv("LABDECK_HOME", str(home))
    paths.home()
    paths.log_dir()
    for folder in (outer, outer / "b", home, home / "logs"):
        assert _mode(folder) == 0o700, folder


def test_a_file_where_the_home_should_be_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LABDECK_HOME", str(blocker))
    with pytest.raises(NotADirectoryError):
        paths.home()
