"""Who owns a process and what it runs, read from /proc (stdlib only, Python >= 3.8).

A process can exit between the GPU listing it and us reading /proc: that is normal, and
gives ``None`` fields rather than an error.
"""

import os
import pwd

COMMAND_MAX_CHARS = 200
PROC = "/proc"


def user_of(pid, proc=PROC):
    """The login name of the process's real uid; the uid as text when it has no name."""
    try:
        with open(os.path.join(proc, str(pid), "status"), "rb") as fh:
            for raw in fh:
                if raw.startswith(b"Uid:"):
                    uid = int(raw.split()[1])
                    break
            else:
                return None
    except (OSError, ValueError, IndexError):
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def command_of(pid, proc=PROC):
    """The command line with NULs as spaces, cut to COMMAND_MAX_CHARS; None if gone."""
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as fh:
            raw = fh.read(COMMAND_MAX_CHARS * 4)
    except OSError:
        return None
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    if not text:
        # Zombies and kernel threads have an empty cmdline; their comm is still useful.
        try:
            with open(os.path.join(proc, str(pid), "comm"), "rb") as fh:
                comm = fh.read().decode("utf-8", "replace").strip()
        except OSError:
            return None
        return "[" + comm + "]" if comm else None
    if len(text) > COMMAND_MAX_CHARS:
        text = text[: COMMAND_MAX_CHARS - 1] + "\u2026"
    return text


def describe(pid, proc=PROC):
    """(user, command) of a pid; both None when the process has vanished."""
    return user_of(pid, proc), command_of(pid, proc)


def own_pids(proc=PROC, uid=None):
    """Pids of live processes owned by ``uid`` (default: ours)."""
    if uid is None:
        uid = os.getuid()
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    pids = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            if os.stat(os.path.join(proc, name)).st_uid == uid:
                pids.append(int(name))
        except OSError:
            continue
    return pids


def environ_of(pid, keys, proc=PROC):
    """The values of ``keys`` in a process's environment ({} if unreadable or gone)."""
    try:
        with open(os.path.join(proc, str(pid), "environ"), "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    found = {}
    prefixes = [(key, (key + "=").encode()) for key in keys]
    for entry in raw.split(b"\0"):
        for key, prefix in prefixes:
            if entry.startswith(prefix):
                found[key] = entry[len(prefix):].decode("utf-8", "replace")
    return found
