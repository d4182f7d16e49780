"""GPU leases on a host: one Linux abstract-namespace UNIX socket per GPU uuid
(``\\0labdeck-gpu-<uuid>``), bound and listened on by a run's wrapper for the run's
lifetime, probed by every user's agent.

Stdlib only, Python >= 3.8, Linux. Why a socket and not a file: an abstract socket needs
no folder, so there is nothing another user can pre-create, symlink, fill or delete, and
no umask decides who may use it; the kernel lets one process bind a name at a time,
whichever Unix user it runs as, and frees the name the moment that process dies. Who
holds a lease comes from the kernel too: a probe connects and reads the holder's uid and
pid with ``SO_PEERCRED``. The holder also answers one short JSON line (its run id and
since when); that text is only a label, shown beside the kernel's uid, never trusted for
who it is. Abstract names belong to the network namespace: processes in a container
with a network namespace of its own do not see these leases.
"""

import errno
import hashlib
import json
import os
import pwd
import re
import select
import socket
import struct
import time

PREFIX = "labdeck-gpu-"
# Tests give each simulated host a namespace of its own, so their leases never meet.
ENV_NS = "LABDECK_LEASE_NS"
# The agent holds no lock while probing, but two wrappers racing for one GPU do meet:
# retry this long before refusing.
ACQUIRE_WAIT_S = 2.0
PROBE_TIMEOUT_S = 0.5
# The agent probes every GPU on every sample: a holder that does not answer at once (a
# squatter) costs it this much, not more.
SAMPLE_PROBE_TIMEOUT_S = 0.1
MAX_ANSWER = 512
MAX_NAME = 100  # bytes after the leading NUL (the kernel allows 107)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]")
_UCRED = struct.Struct("3i")  # pid, uid, gid


class Held(Exception):
    """A GPU's lease is held by another process; ``holder`` says who (kernel facts)."""

    def __init__(self, uuid, holder):
        Exception.__init__(self, "GPU %s is leased by %s" % (uuid, describe(holder)))
        self.uuid = uuid
        self.holder = holder


def namespace(root=None):
    return root if root is not None else os.environ.get(ENV_NS, "")


def address(uuid, root=None):
    """The abstract socket name of a GPU's lease (a str starting with NUL)."""
    text = str(uuid)
    if not text.strip() or "\0" in text:
        raise ValueError("not a GPU uuid: %r" % (uuid,))
    ns = namespace(root)
    name = PREFIX + (ns + "-" if ns else "") + _UNSAFE.sub("_", text)
    if len(name.encode("utf-8")) > MAX_NAME:
        # Still one name per uuid, and never the same for two uuids.
        name = PREFIX + hashlib.sha256(
            (ns + "\0" + text).encode("utf-8", "surrogateescape")).hexdigest()[:64]
    return "\0" + name


def describe(holder):
    """'run R (user bob, pid 123)' from a probe's answer, for messages."""
    if not holder:
        return "another process"
    if holder.get("uid") is None:
        return "a process that does not answer probes"
    who = "user %s, pid %s" % (holder.get("user"), holder.get("pid"))
    run = holder.get("run_id")
    return ("run %s (%s)" % (run, who)) if run else who


class Lease(object):
    """A held lease: the bound, listening socket. Close it (or die) to release."""

    def __init__(self, uuid, sock, answer):
        self.uuid = uuid
        self.sock = sock
        self.answer = answer

    def fileno(self):
        return self.sock.fileno()

    def serve(self):
        """Answer every probe waiting on this lease (non-blocking)."""
        while True:
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                conn.settimeout(0.2)
                conn.sendall(self.answer)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


def _bind(uuid, answer, root):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address(uuid, root))
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Lease(uuid, sock, answer)


def acquire(uuids, run_id, wait_s=ACQUIRE_WAIT_S, root=None, since=None):
    """Lease every GPU in ``uuids`` for ``run_id``, all or none.

    Returns the held ``Lease`` objects (keep them, and call ``serve`` often, for as long
    as the leases must hold); raises Held naming the first GPU whose lease stays taken
    for ``wait_s`` and who holds it.
    """
    answer = (json.dumps({"run_id": str(run_id)[:128],
                          "since": since if since is not None else time.time()})
              + "\n").encode("utf-8")
    held = []
    try:
        # A fixed order: two wrappers wanting the same GPUs meet at the same first one.
        for uuid in sorted(set(uuids)):
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    held.append(_bind(uuid, answer, root))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                if time.monotonic() >= deadline:
                    raise Held(uuid, holder_info(uuid, root))
                time.sleep(0.05)
    except BaseException:
        for lease in held:
            lease.close()
        raise
    return held


def serve_all(held, timeout):
    """Wait up to ``timeout`` seconds for probes on any of ``held`` and answer them."""
    if not held:
        time.sleep(timeout)
        return
    try:
        ready, _w, _x = select.select(held, [], [], timeout)
    except (OSError, ValueError):
        time.sleep(timeout)
        return
    for lease in ready:
        lease.serve()


def _user(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


def holder_info(uuid, root=None, timeout=PROBE_TIMEOUT_S):
    """Who holds a GPU's lease: ``{"uid", "user", "pid", "run_id", "since"}`` (uid, user
    and pid from the kernel; run_id and since as the holder said, or None), or None
    when the lease is free."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Non-blocking: a holder that never accepts (its backlog full) must not stall
        # the agent's sampling; it answers EAGAIN at once.
        sock.setblocking(False)
        try:
            sock.connect(address(uuid, root))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except (BlockingIOError, InterruptedError):
            return {"uid": None, "user": None, "pid": None, "run_id": None, "since": None}
        except OSError:
            return None
        sock.settimeout(timeout)
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            pid, uid, _gid = _UCRED.unpack(raw)
        except OSError:
            pid, uid = None, None
        info = {"uid": uid, "user": _user(uid) if uid is not None else None, "pid": pid,
                "run_id": None, "since": None}
        said = _read_answer(sock)
        run_id = said.get("run_id")
        if isinstance(run_id, str) and run_id.isprintable():
            info["run_id"] = run_id[:128]
        since = said.get("since")
        if isinstance(since, (int, float)) and not isinstance(since, bool):
            info["since"] = float(since)
        return info
    finally:
        sock.close()


def _read_answer(sock):
    data = b""
    try:
        while len(data) < MAX_ANSWER and not data.endswith(b"\n"):
            chunk = sock.recv(MAX_ANSWER - len(data))
            if not chunk:
                break
            data += chunk
    except OSError:
        pass  # a holder that does not answer (busy, or not a wrapper): kernel facts only
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def holder(uuid, root=None, timeout=PROBE_TIMEOUT_S):
    """The run id holding a GPU's lease as its holder says it, ``"pid N"`` when it says
    none, ``"unknown"`` when it cannot even be asked, or None when the lease is free."""
    info = holder_info(uuid, root, timeout)
    if info is None:
        return None
    if info["run_id"]:
        return info["run_id"]
    return "pid %d" % info["pid"] if info["pid"] is not None else "unknown"


def listed(root=None):
    """GPU uuids (as named, unsafe characters replaced) whose leases are held now, read
    from /proc/net/unix; a name made by hashing a too-long uuid stands for itself."""
    ns = namespace(root)
    prefix = "@" + PREFIX + (ns + "-" if ns else "")
    found = set()
    try:
        with open("/proc/net/unix", "r", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[7].startswith(prefix):
                    found.add(parts[7][len(prefix):])
    except OSError:
        pass
    return sorted(found)


def held_by_uid(uid, root=None, skip=()):
    """How many GPU leases the Unix user ``uid`` holds now, by the kernel's word (peer
    credentials of each held lease), not counting the uuids in ``skip``."""
    skipped = {_UNSAFE.sub("_", str(uuid)) for uuid in skip}
    count = 0
    for name in listed(root):
        if name in skipped:
            continue
        info = holder_info(name, root, timeout=SAMPLE_PROBE_TIMEOUT_S)
        if info is not None and info["uid"] == uid:
            count += 1
    return count
