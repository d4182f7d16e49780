"""Facts about this host that tell one boot and one process from another: the boot id,
and process start times read from /proc (the guard against pid reuse).

Stdlib only, Python >= 3.8: shared by the agent, the run wrapper and runctl on a host.
A zombie counts as gone: on hosts whose init does not reap orphans, a finished wrapper
stays in /proc as a zombie with its old start time.
"""

import os

PROC = "/proc"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
# Test hook: names a file whose content replaces the boot id (a fake reboot is a new
# content). An unset variable or an unreadable file means the real boot id.
ENV_BOOT_ID_FILE = "LABDECK_BOOT_ID_FILE"


def boot_id():
    """This boot's id; ``"unknown"`` when neither source can be read."""
    paths = [BOOT_ID_PATH]
    override = os.environ.get(ENV_BOOT_ID_FILE)
    if override:
        paths.insert(0, override)
    for path in paths:
        try:
            with open(path) as fh:
                value = fh.read().strip()
        except OSError:
            continue
        if value:
            return value
    return "unknown"


def _stat(pid, proc=PROC):
    """Fields 3 onwards of /proc/<pid>/stat (state first), or None when gone."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), "rb") as fh:
            raw = fh.read()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    end = raw.rfind(b")")
    if end < 0:
        return None
    fields = raw[end + 2:].split()
    return fields if len(fields) > 19 else None


def start_ticks(pid, proc=PROC):
    """Start time of a live process in clock ticks since boot (stat field 22); None when
    the process is gone or a zombie."""
    fields = _stat(pid, proc)
    if fields is None or fields[0] in (b"Z", b"X", b"x"):
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def alive(pid, ticks, proc=PROC):
    """Whether ``pid`` is the very process that started at ``ticks`` and still runs."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if not isinstance(ticks, int) or isinstance(ticks, bool):
        return False
    return start_ticks(pid, proc) == ticks


def boot_time(proc=PROC):
    """Seconds since the epoch at which this host booted (``btime`` of /proc/stat)."""
    try:
        with open(os.path.join(proc, "stat"), "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def ticks_to_epoch(ticks, proc=PROC):
    """A start time in ticks as seconds since the epoch (for people; compare ticks)."""
    booted = boot_time(proc)
    if booted is None or ticks is None:
        return None
    return booted + ticks / float(os.sysconf("SC_CLK_TCK"))


def session_of(pid, proc=PROC):
    """The session id of a live process, or None."""
    fields = _stat(pid, proc)
    if fields is None or fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[3])


def open_files(sid, proc=PROC, limit=4096):
    """Real paths of the files that live processes of session ``sid`` hold open
    (bounded; processes of other users are not readable and are skipped)."""
    found = set()
    try:
        names = os.listdir(proc)
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or session_of(name, proc) != sid:
            continue
        folder = os.path.join(proc, name, "fd")
        try:
            fds = os.listdir(folder)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(folder, fd))
            except OSError:
                continue
            if target.startswith("/"):
                found.add(target)
                if len(found) >= limit:
                    return found
    return found


def group_members(pgid, proc=PROC):
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    found = []
    try:
        names = os.listdir(proc)
    except OSError:
        return found
    wanted = str(pgid).encode()
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat(name, proc)
        if fields is None or fields[0] in (b"Z", b"X", b"x"):
            continue
        if fields[2] == wanted:
            found.append(int(name))
    return found
