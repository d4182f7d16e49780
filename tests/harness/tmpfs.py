"""A small tmpfs mounted on a folder for a test, to make a disk really fill up.

``with tmpfs(folder, size_mib=24) as disk:`` mounts a fresh tmpfs of that size over
``folder`` (created if missing; what was in it is hidden while mounted), ``disk.fill()``
writes a filler file until the kernel answers ENOSPC, ``disk.free()`` deletes it again.
On exit the tmpfs is unmounted (lazily if a process still holds a file on it). Mounting
needs root (CAP_SYS_ADMIN): where it is not permitted the test fails saying so, it is
never skipped.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

FILLER = ".filler"


@dataclass
class Tmpfs:
    path: Path

    @property
    def filler(self) -> Path:
        return self.path / FILLER

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self) -> int:
        """Write to the filler file until the disk is full; returns the bytes written."""
        written = 0
        block = b"\0" * (64 * 1024)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (len(block), 4096, 1):  # the last pages and bytes too
                while True:
                    try:
                        written += os.write(fd, block[:size])
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        assert self.free_bytes() == 0, f"{self.path} still has {self.free_bytes()} bytes free"
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


@contextmanager
def tmpfs(path: Path, size_mib: int = 24, mode: int = 0o700) -> Iterator[Tmpfs]:
    """Mount a ``size_mib`` MiB tmpfs (root dir ``mode``) on ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode={mode:o}", "tmpfs", str(path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs on {path} ({result.stderr.strip() or result.returncode}): "
            "the disk-full tests need root with CAP_SYS_ADMIN (run them as root, or in a "
            "container started with --cap-add SYS_ADMIN)"
        )
    try:
        yield Tmpfs(path)
    finally:
        _unmount(path)


def _unmount(path: Path) -> None:
    # A host's agent or a run may still hold a file there for a moment after the test.
    for _ in range(20):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    assert not _mounted(path), f"could not unmount the tmpfs on {path}"
