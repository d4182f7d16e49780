"""Code snapshots: the local script or folder a run takes with it to the host.

Read once at launch into relative POSIX path → bytes; the launch writes them into the run's
``code/`` folder on the host. Limits keep a stray dataset from being copied over SSH.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_SNAPSHOT_BYTES = 50 * 1024 * 1024
MAX_SNAPSHOT_FILES = 20_000
# Never part of a code snapshot: version control, caches and local environments.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"})


class SnapshotError(ValueError):
    """The upload cannot be snapshot (too big, unreadable); the message says why."""


def read_snapshot(upload: str | None) -> dict[str, bytes]:
    """The files of ``upload`` as relative POSIX path → content ({} when None).

    A folder is read whole except :data:`SKIP_DIRS` and ``*.pyc``. Symbolic links are
    followed only to regular files inside the folder (never out of it, never to folders,
    so a loop cannot form); FIFOs, sockets and devices are skipped, as reading one could
    block. More than :data:`MAX_SNAPSHOT_BYTES` in all raises :class:`SnapshotError`
    before anything is read.
    """
    if upload is None:
        return {}
    root = Path(upload).expanduser()
    if root.is_file():
        entries = [(root.name, root)]
    elif root.is_dir():
        entries = _folder_entries(root)
    else:
        raise SnapshotError(f"upload: {upload} does not exist (or is not a file/folder)")
    sizes = [(rel, p, p.stat().st_size) for rel, p in entries]
    total = sum(size for _, _, size in sizes)
    if total > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(
            f"upload: {upload} holds {total / 2**20:.1f} MiB to upload, more than the "
            f"{MAX_SNAPSHOT_BYTES // 2**20} MiB limit; keep data on the host (point the "
            "script at it) or upload a smaller folder"
        )
    files: dict[str, bytes] = {}
    for rel, p, _ in sizes:
        try:
            files[rel] = p.read_bytes()
        except OSError as e:
            raise SnapshotError(f"upload: cannot read {p}: {e.strerror or e}") from e
    return files


def _folder_entries(root: Path) -> list[tuple[str, Path]]:
    real_root = root.resolve()
    out: list[tuple[str, Path]] = []
    for top, dirnames, filenames in os.walk(root, onerror=_walk_error, followlinks=False):
        dirpath = Path(top)
        dirnames[:] = sorted(d for d in dirnames
                             if d not in SKIP_DIRS and not (dirpath / d).is_symlink())
        for fname in sorted(filenames):
            p = dirpath / fname
            if fname.endswith(".pyc") or not _regular_inside(p, real_root):
                continue
            out.append((p.relative_to(root).as_posix(), p))
            if len(out) > MAX_SNAPSHOT_FILES:
                raise SnapshotError(
                    f"upload: {root} holds more than {MAX_SNAPSHOT_FILES:,} files; "
                    "upload a smaller folder"
                )
    return out


def _walk_error(error: OSError) -> None:
    raise SnapshotError(f"upload: cannot read {error.filename}: {error.strerror or error}")


def _regular_inside(p: Path, real_root: Path) -> bool:
    try:
        if p.is_symlink() and not p.resolve().is_relative_to(real_root):
            return False
        return p.is_file()
    except (OSError, RuntimeError):  # a dangling link or a loop
        return False
