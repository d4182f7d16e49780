"""One dispatcher per queue: an exclusive ``flock`` beside the store file.

The window and ``labdeck serve`` may both be open on one LABDECK_HOME; only the holder of
this lock dispatches, the other waits and takes over when the holder exits (the kernel
drops the lock of a killed process). Claims are compare-and-sets either way, so this is
not what keeps a run from starting twice; it keeps a second dispatcher from taking the
first one's launch in progress for one that never reached its host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path


class QueueLock:
    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(store_path.name + ".dispatcher.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if free (True), else leave it (False); True if already held."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        # The holder's pid, so the other side can say who dispatches.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> int | None:
        """The pid written by the current holder (None if unknown)."""
        try:
            return int(self.path.read_text().strip() or "0") or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
