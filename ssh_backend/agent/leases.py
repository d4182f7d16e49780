"""GPU leases on a host: one file per GPU uuid under /tmp/labdeck-leases/, held with
``flock`` by a run's wrapper for the run's lifetime, probed by the agent.

Stdlib only, Python >= 3.8. The lock, not the file, is the lease: it dies with the
process that holds it, so a crashed wrapper can never leave a GPU booked. Lease files are
never deleted (a new file would be a new lock beside a held one). The file holds the run
id of its last holder, so a held lease can name who holds it.
"""

import errno
import fcntl
import os
import re
import stat
import time

DEFAULT_DIR = "/tmp/labdeck-leases"
# Tests point this at their own folder, so parallel test runs never share leases.
ENV_DIR = "LABDECK_LEASE_DIR"
# The agent holds LOCK_SH for a moment on every sample: retry that long before refusing.
ACQUIRE_WAIT_S = 2.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Held(Exception):
    """A GPU's lease is held by another run."""

    def __init__(self, uuid, holder):
        Exception.__init__(self, "GPU %s is leased by run %s" % (uuid, holder))
        self.uuid = uuid
        self.holder = holder


def lease_dir():
    return os.environ.get(ENV_DIR) or DEFAULT_DIR


def lease_path(uuid, root=None):
    """The lease file of a GPU (MIG uuids hold '/', so unsafe characters become '_')."""
    name = _UNSAFE.sub("_", str(uuid))
    if not name.strip("."):
        raise ValueError("not a GPU uuid: %r" % (uuid,))
    return os.path.join(root or lease_dir(), name)


def ensure_dir(root=None):
    """Create the lease folder world-writable and sticky (every user leases there)."""
    root = root or lease_dir()
    try:
        os.mkdir(root, 0o1777)
    except FileExistsError:
        return root
    # mkdir's mode is cut by the umask; the folder must really be 1777.
    os.chmod(root, 0o1777)
    return root


def _open(path, create):
    """A descriptor on a lease file: read-write when we may (to record our run id),
    read-only otherwise (another user's file: flock needs no write access)."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except PermissionError:
        fd = os.open(path, flags | os.O_RDONLY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "lease %s is not a regular file" % path)
    return fd


def _content(fd):
    try:
        raw = os.pread(fd, 256, 0)
    except OSError:
        return "unknown"
    text = raw.decode("utf-8", "replace").strip().splitlines()
    return text[0][:64] if text and text[0] else "unknown"


def _try_lock(fd, how):
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def acquire(uuids, run_id, wait_s=ACQUIRE_WAIT_S, root=None):
    """Lease every GPU in ``uuids`` for ``run_id``, all or none.

    Returns the open descriptors (keep them open to keep the leases); raises Held naming
    the first GPU whose lease stays taken for ``wait_s`` and its holder's run id.
    """
    root = ensure_dir(root)
    held = []
    try:
        # A fixed order: two wrappers wanting the same GPUs meet at the same first one.
        for uuid in sorted(set(uuids)):
            fd = _open(lease_path(uuid, root), create=True)
            deadline = time.monotonic() + wait_s
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    holder = _content(fd)
                    os.close(fd)
                    raise Held(uuid, holder)
                time.sleep(0.05)
            held.append(fd)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (run_id + "\n").encode("utf-8"), 0)
            except OSError:
                pass  # another user's file (read-only): the lease holds all the same
    except BaseException:
        for fd in held:
            os.close(fd)
        raise
    return held


def holder(uuid, root=None):
    """The run id holding a GPU's lease, or None when it is free (probed with a shared
    lock taken and dropped at once)."""
    try:
        fd = os.open(lease_path(uuid, root), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _content(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
