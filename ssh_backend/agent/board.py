"""The lab board on a host: what each lab member's Labdeck publishes for the others to
honour and see (reservations of GPUs, waiting demand, GPU-hours used), with no server.

Stdlib only, Python >= 3.8. Each Unix user writes one file of their own,
``labdeck-board-<uid>.json``, into a shared sticky folder (``/var/tmp`` by default: on
every Linux it is root's, world-writable and sticky, and it outlives a reboot). Whose
entries a file holds comes from the kernel (the file's owner, by ``fstat`` on the opened
file), never from its name or content: a file that names another user is simply that
file owner's. The sticky bit stops others from replacing or deleting a user's file;
someone who squats the name first only makes that user write under another name.
The folder is checked before use (a real folder, not a link, sticky, owned by root or by
the reader); when it is not safe, the board says so and nothing is read from or written to it.
"""

import errno
import fcntl
import json
import os
import pwd
import stat
import time

import rundir

DEFAULT_DIR = "/var/tmp"
# Tests give each simulated host a board of its own (a sticky folder they made).
ENV_DIR = "LABDECK_BOARD_DIR"
PREFIX = "labdeck-board-"
MAX_FILE_BYTES = 64 * 1024
MAX_FILES = 512
MAX_RESERVATIONS = 64  # per user
MAX_DEMAND = 32  # entries per user
MAX_NOTE = 200
# Waiting demand fades when its Labdeck stops renewing it (a laptop closed): readers
# ignore a user's demand published longer ago than this.
DEMAND_TTL_S = 180.0
# GPU-seconds used, kept per hour (the wrappers add to it as their runs go on) for a
# little over a week: enough for "GPU-hours over the last day / week", and bounded.
USAGE_BUCKET_S = 3600
USAGE_KEEP_S = 8 * 86400
MAX_USAGE_BUCKETS = USAGE_KEEP_S // USAGE_BUCKET_S + 2
MAX_GPUS_PER_BUCKET = 4096
# In the user's own runs root: one user's writers of their board file (runctl's
# reservations and demand, every wrapper's usage) take turns, so none loses another's.
OWN_LOCK = ".board.lock"


class Unsafe(Exception):
    """The board's folder cannot be trusted; the message says why and what to do."""


def board_dir():
    return os.environ.get(ENV_DIR) or DEFAULT_DIR


def check_dir(path=None):
    """The board folder, verified; Unsafe when another user could tamper with it."""
    path = path or board_dir()
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise Unsafe("the lab board folder %s cannot be used: %s" % (
            path, exc.strerror)) from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise Unsafe("the lab board folder %s is not a real folder (a link?): "
                     "ask the host's admin to check it" % path)
    if info.st_uid not in (0, os.getuid()):
        raise Unsafe("the lab board folder %s belongs to another user (uid %d), who could "
                     "delete the lab's entries: ask the host's admin to check it"
                     % (path, info.st_uid))
    if info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX:
        raise Unsafe("the lab board folder %s is writable by everyone but not sticky: "
                     "ask the host's admin to run chmod +t on it" % path)
    return path


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


def _read_file(folder, name):
    """(owner uid, entries dict) of one board file, or None when it is not one."""
    path = os.path.join(folder, name)
    try:
        # O_NONBLOCK: a FIFO planted under a board name must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    return info.st_uid, info.st_mtime, obj


def _reservations_of(obj, now):
    found = []
    items = obj.get("reservations")
    if not isinstance(items, list):
        return found
    for item in items[:MAX_RESERVATIONS]:
        if not isinstance(item, dict):
            continue
        uuid, until = item.get("gpu_uuid"), item.get("until")
        if not isinstance(uuid, str) or not uuid or len(uuid) > 128:
            continue
        if isinstance(until, bool) or not isinstance(until, (int, float)) or until <= now:
            continue  # expired reservations fade by themselves
        note = item.get("note")
        note = note[:MAX_NOTE] if isinstance(note, str) else ""
        since = item.get("since")
        since = since if isinstance(since, (int, float)) and not isinstance(since, bool) else None
        found.append({"gpu_uuid": uuid, "until": float(until), "since": since, "note": note})
    return found


def _demand_of(obj, now):
    """A user's waiting demand, if renewed within DEMAND_TTL_S: ``[{gpus, runs, since,
    priority}]`` (GPUs per run, how many such runs wait, since when, their priority)."""
    updated = obj.get("demand_updated")
    if isinstance(updated, bool) or not isinstance(updated, (int, float)) \
            or now - updated > DEMAND_TTL_S:
        return []
    items = obj.get("demand")
    found = []
    for item in items[:MAX_DEMAND] if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        gpus, runs = item.get("gpus"), item.get("runs")
        since, priority = item.get("since"), item.get("priority", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool)
                   for v in (gpus, runs, priority)) or not 1 <= gpus <= 1024 \
                or not 1 <= runs <= 1000000:
            continue
        if isinstance(since, bool) or not isinstance(since, (int, float)):
            continue
        found.append({"gpus": gpus, "runs": runs, "since": float(since),
                      "priority": priority})
    return found


def _usage_of(obj, now):
    """A user's GPU-seconds by hour (start of the hour -> seconds), the last week's."""
    items = obj.get("usage")
    found = {}
    if not isinstance(items, dict):
        return found
    for key, value in list(items.items())[:MAX_USAGE_BUCKETS * 2]:
        try:
            hour = int(key)
        except ValueError:
            continue
        if hour % USAGE_BUCKET_S or not now - USAGE_KEEP_S < hour <= now:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value <= USAGE_BUCKET_S * MAX_GPUS_PER_BUCKET:
            continue
        found[hour] = float(value)
    return found


def usage_totals(buckets, now):
    """GPU-hours over the last day and the last week from hourly buckets (an hour that
    the window cuts counts for the part inside it)."""
    totals = {}
    for name, span in (("day_gpu_h", 86400), ("week_gpu_h", 7 * 86400)):
        start = now - span
        seconds = 0.0
        for hour, value in buckets.items():
            end = min(hour + USAGE_BUCKET_S, now)  # the hour so far, for the current one
            inside = end - max(hour, start)
            if inside > 0:
                seconds += value * min(1.0, inside / max(end - hour, 1.0))
        totals[name] = round(seconds / 3600.0, 4)
    return totals


def read(folder=None, now=None):
    """Every user's entries: ``{"reservations": [{gpu_uuid, until, since, note, uid,
    user}], "demand": [{gpus, runs, since, priority, uid, user}], "usage": [{uid, user,
    day_gpu_h, week_gpu_h}]}``. Unsafe when the folder cannot be trusted."""
    folder = check_dir(folder)
    now = time.time() if now is None else now
    newest = {}  # uid -> (mtime, obj): a user's latest file wins
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(PREFIX)
                       and n.endswith(".json"))
    except OSError as exc:
        raise Unsafe("the lab board folder %s cannot be read: %s" % (
            folder, exc.strerror)) from None
    for name in names[:MAX_FILES]:
        got = _read_file(folder, name)
        if got is None:
            continue
        uid, mtime, obj = got
        if uid not in newest or mtime > newest[uid][0]:
            newest[uid] = (mtime, obj)
    reservations, demand, usage = [], [], []
    for uid, (_mtime, obj) in sorted(newest.items()):
        user = user_name(uid)
        for item in _reservations_of(obj, now):
            item.update(uid=uid, user=user)
            reservations.append(item)
        for item in _demand_of(obj, now):
            item.update(uid=uid, user=user)
            demand.append(item)
        used = usage_totals(_usage_of(obj, now), now)
        if used["week_gpu_h"] > 0:
            used.update(uid=uid, user=user)
            usage.append(used)
    reservations.sort(key=lambda r: (r["gpu_uuid"], r["since"] or 0))
    return {"reservations": reservations, "demand": demand, "usage": usage}


def own_path(folder):
    return os.path.join(folder, "%s%d.json" % (PREFIX, os.getuid()))


def _own_file(folder):
    """This user's board file: the usual name, or (if someone squats it) the newest file
    of this user's own, or a fresh name."""
    usual = own_path(folder)
    try:
        info = os.lstat(usual)
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
            return usual
    except FileNotFoundError:
        return usual
    except OSError:
        pass
    mine = []
    for name in os.listdir(folder):
        if name.startswith("%s%d-" % (PREFIX, os.getuid())) and name.endswith(".json"):
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                mine.append((info.st_mtime, path))
    if mine:
        return max(mine)[1]
    return os.path.join(folder, "%s%d-%s.json" % (PREFIX, os.getuid(),
                                                  os.urandom(6).hex()))


def _load_own(path):
    got = _read_file(os.path.dirname(path), os.path.basename(path))
    if got is None or got[0] != os.getuid():
        return {}
    return got[2]


def _write_own(path, obj):
    """Replace this user's board file atomically (temp file + rename, both ours)."""
    folder = os.path.dirname(path)
    temp = os.path.join(folder, ".%s%d-%s.tmp" % (PREFIX, os.getuid(), os.urandom(6).hex()))
    data = (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError("too many board entries")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        os.fchmod(fd, 0o644)  # readable by the lab whatever the umask: that is its point
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)
    try:
        os.rename(temp, path)
    except OSError as exc:
        os.unlink(temp)
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise Unsafe("cannot write the lab board file %s: %s" % (
                path, exc.strerror)) from None
        raise


class _own_turn(object):
    """This user's turn at their own board file, held in a ``with`` (see OWN_LOCK)."""

    def __enter__(self):
        self.fd = None
        root = rundir.runs_root()
        try:
            os.makedirs(root, 0o700, exist_ok=True)
            self.fd = os.open(os.path.join(root, OWN_LOCK),
                              os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            # No runs root (a user without a home): then no run of theirs writes usage
            # either, and a reservation has no other writer of its own to wait for.
            return self
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc):
        if self.fd is not None:
            os.close(self.fd)
        return False


def _change_own(folder, now, change):
    """Load this user's board file, let ``change(obj)`` edit it, write it back (in turn
    with this user's other writers); returns what ``change`` returned."""
    folder = check_dir(folder)
    with _own_turn():
        path = _own_file(folder)
        obj = _load_own(path)
        obj["reservations"] = _reservations_of(obj, now)
        obj["usage"] = {str(h): v for h, v in sorted(_usage_of(obj, now).items())}
        result = change(obj)
        obj["updated"] = now
        _write_own(path, obj)
    return result


def update_reservations(change, folder=None, now=None):
    """Apply ``change(list_of_own_reservations) -> new_list`` to this user's entries;
    returns the new list. Expired entries are dropped on the way."""
    now = time.time() if now is None else now

    def edit(obj):
        obj["reservations"] = change(obj["reservations"])[:MAX_RESERVATIONS]
        return obj["reservations"]
    return _change_own(folder, now, edit)


def publish_demand(entries, folder=None, now=None):
    """Replace this user's waiting demand (see ``_demand_of``) and renew its time."""
    now = time.time() if now is None else now

    def edit(obj):
        obj["demand"] = list(entries)[:MAX_DEMAND]
        obj["demand_updated"] = now
        return _demand_of(obj, now)
    return _change_own(folder, now, edit)


def add_usage(gpus, start, end, folder=None):
    """Add ``gpus`` GPUs held from ``start`` to ``end`` (epoch seconds) to this user's
    GPU-hours, split over the hours they fall in."""
    if gpus <= 0 or end <= start:
        return
    now = time.time()

    def edit(obj):
        usage = obj["usage"]
        at = max(start, now - USAGE_KEEP_S + USAGE_BUCKET_S)
        while at < end:
            hour = int(at // USAGE_BUCKET_S) * USAGE_BUCKET_S
            upto = min(end, hour + USAGE_BUCKET_S)
            key = str(hour)
            usage[key] = min(usage.get(key, 0.0) + gpus * (upto - at),
                             USAGE_BUCKET_S * MAX_GPUS_PER_BUCKET)
            at = upto
    _change_own(folder, now, edit)


def reservation_of(uuids, folder=None, now=None):
    """The first reservation of one of ``uuids`` held by anyone, or None. Reserved GPUs
    are kept out of every Labdeck's runs, the reserving user's too (they are for work
    by hand)."""
    wanted = set(uuids)
    for item in read(folder, now)["reservations"]:
        if item["gpu_uuid"] in wanted:
            return item
    return None


def describe(item):
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(item["until"]))
    text = "reserved by %s until %s" % (item["user"], until)
    return text + (" — " + item["note"] if item.get("note") else "")
