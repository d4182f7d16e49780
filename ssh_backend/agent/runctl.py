"""Run control on a host: launch, cancel and reconcile runs, one request per call.

    python3 -B runctl.py  < one JSON request on stdin  > one JSON reply on stdout

Stdlib only, Python >= 3.8. Every value arrives inside the JSON on stdin, never on a
command line. Requests: ``{"op": "launch", "run_id", "job", "gpu_indices", "gpu_uuids",
"secrets"}``,
``{"op": "cancel", "run_id", "grace_s"}``, ``{"op": "reconcile", "run_ids": [...],
"fence": [...]}``, ``{"op": "discard", "run_id"}`` (remove a never-launched attempt's
folder), ``{"op": "space"}`` (is there room for runs?), ``{"op": "board", "demand"}``
(the lab board: every member's reservations and demand, owners from the kernel, and the
GPU leases held; publishes this user's demand first), ``{"op": "reserve",
"gpu_uuid", "until", "note"}`` and ``{"op": "unreserve", "gpu_uuid"}`` (this user's own).
Replies: ``{"ok": true, "status": {...}}`` (``"statuses": {id: {...}}`` for reconcile,
``"free_bytes"`` for space), ``{"ok": false, "refused": "<why>"}`` when the host
refuses a launch (lease held; with ``"host_wide": true`` when no run can start here
now, as on a full disk) and ``{"ok": false, "error": "<why>"}`` for a malformed request.

Launch is idempotent per run folder: a run whose folder holds job.json was launched
before, and a second launch only reports its status. A refused launch removes the whole
folder, so it leaves nothing behind and the same id may be tried again. A retry of a
finished or lost run needs a fresh attempt id (``<run>-a<n>``).

Exactly once across attempts: a launch claims its attempt under the runs root's claim
lock, and is refused while any other attempt of the same run is live on this host. When
a launch went unanswered (timeout, cut), the app reconciles with ``fence``: under the same
lock, an attempt that never got its job.json is fenced, so a request for it that arrives
late (a runctl started minutes later on a loaded host) is refused instead of starting a
second copy beside the attempt that replaces it.

A launch's ``secrets`` (``{NAME: value}``) never touch a file: they are written to the
wrapper's stdin (a pipe) and the wrapper puts them into the job's environment only.
Errors about them name the variable, never the value.
"""

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import board  # noqa: E402
import hostinfo  # noqa: E402
import leases  # noqa: E402
import policy  # noqa: E402
import rundir  # noqa: E402

MAX_REQUEST_BYTES = 4 * 1024 * 1024
# How long a launch waits for the wrapper to start the job (or refuse) before replying.
STARTUP_WAIT_S = 5.0
# How long a launch or cancel waits for another launch of the same run to finish.
LOCK_WAIT_S = 8.0
MIN_FREE_BYTES = 16 * 1024 * 1024
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BadRequest(Exception):
    """The request is malformed (a bug in the caller, not a host condition)."""


class Refused(Exception):
    """The host cannot take this launch now; the message is for the user. ``host_wide``:
    no run can start on this host now (its disk is full), not only this one."""

    def __init__(self, message, host_wide=False):
        Exception.__init__(self, message)
        self.host_wide = host_wide


def no_space(path, free=None):
    """The refusal for a disk too full to hold a run (says where and what to do)."""
    have = "" if free is None else " (%.1f MiB free, %d MiB needed)" % (
        free / 1048576.0, MIN_FREE_BYTES // 1048576)
    return Refused("no space left on the disk holding %s%s: free some space there" % (
        rundir.display(path), have), host_wide=True)


def cannot_write(path, exc):
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return no_space(path)
    return Refused("cannot write %s: %s" % (rundir.display(path), exc.strerror or exc))


def _text(value, what, allow_empty=True):
    if not isinstance(value, str) or "\0" in value or (not allow_empty and not value):
        raise BadRequest("%s must be a%s string without NUL" % (
            what, "" if allow_empty else " non-empty"))
    return value


def _strings(value, what):
    if not isinstance(value, list):
        raise BadRequest("%s must be a list of strings" % what)
    return [_text(item, what + "[]") for item in value]


def check_job(job):
    """The job dict of a launch request, validated (format: contract of job.json)."""
    if not isinstance(job, dict):
        raise BadRequest("job must be an object")
    argv = _strings(job.get("argv") or [], "job.argv")
    shell = job.get("shell")
    if shell is not None:
        _text(shell, "job.shell", allow_empty=False)
    if (shell is None) == (not argv):
        raise BadRequest("job needs either argv or shell, not both or neither")
    env = job.get("env") or {}
    if not isinstance(env, dict):
        raise BadRequest("job.env must be an object")
    for key, value in env.items():
        if not ENV_NAME.match(key):
            raise BadRequest("job.env: %r is not a variable name" % (key,))
        _text(value, "job.env[%s]" % key)
    _strings(job.get("setup") or [], "job.setup")
    for key in ("workdir", "sim_host"):
        if job.get(key) is not None:
            _text(job[key], "job." + key, allow_empty=False)
    for key in ("time_limit_s", "kill_grace_s"):
        value = job.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or not value >= 0):
            raise BadRequest("job.%s must be a number >= 0 or null" % key)
    return job


def check_secrets(secrets):
    """The launch's secrets, ``{NAME: value}``, validated; messages never show a value."""
    if secrets is None:
        return {}
    if not isinstance(secrets, dict):
        raise BadRequest("secrets must be an object")
    for key, value in secrets.items():
        if not ENV_NAME.fullmatch(key):
            raise BadRequest("secrets: %r is not a variable name" % (key,))
        if not isinstance(value, str) or "\0" in value or not _encodes(value):
            raise BadRequest("secrets[%s] must be a string without NUL" % key)
    return secrets


def _encodes(text):
    """Whether ``text`` can go into the job's environment, which is bytes (surrogateescape
    gives back the bytes a non-UTF-8 value was read from)."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def check_gpus(request):
    indices = request.get("gpu_indices")
    uuids = request.get("gpu_uuids")
    if not isinstance(indices, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
        raise BadRequest("gpu_indices must be a list of GPU indices")
    uuids = _strings(uuids, "gpu_uuids")
    if len(uuids) != len(indices) or not all(uuids):
        raise BadRequest("gpu_uuids must name one uuid per GPU index")
    return indices, uuids


def folder_of(request):
    try:
        return rundir.run_dir(request.get("run_id"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def lock_launch(folder, mode):
    """The run's launch lock, held (flock ``mode``) on the returned descriptor.
    FileNotFoundError when the folder is (or, while we waited, was) removed: a refused
    launch removes its folder, and a lock on the removed file guards nothing."""
    path = os.path.join(folder, rundir.LAUNCH_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                raise FileNotFoundError(errno.ENOENT, "run folder removed", folder)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            os.close(fd)
            raise Refused("another launch of this run is still in progress")
        time.sleep(0.05)


def free_space():
    """Bytes free for run folders; Refused (host-wide) when under MIN_FREE_BYTES.
    Checked before a run's own folder is made: a full disk leaves no empty run folder
    behind for each refused try."""
    path = rundir.runs_root()
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)  # the disk that will hold it
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise no_space(rundir.runs_root(), free)
    return free


def make_folder(folder):
    """The run folder (0700), created if needed; Refused with the reason if it cannot be."""
    free_space()
    try:
        try:
            os.mkdir(folder, 0o700)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(folder), 0o700, exist_ok=True)
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
    except OSError as exc:
        raise cannot_write(folder, exc) from None


def wait_started(folder, process=None, wait_s=STARTUP_WAIT_S):
    """Wait until the job started (state.json), the run ended or the wrapper exited."""
    deadline = time.monotonic() + wait_s
    wrapper = rundir.read_json(os.path.join(folder, rundir.WRAPPER)) or {}
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(folder, rundir.STATE)) or \
                rundir.read_exit_code(folder) is not None:
            return
        if process is not None:
            if process.poll() is not None:
                return
        elif not hostinfo.alive(wrapper.get("pid"), wrapper.get("start_ticks")):
            return
        time.sleep(0.02)


def spawn_wrapper(folder, secrets):
    """Start wrapper.py detached: own session, no terminal, streams to wrapper.log, and
    ``secrets`` as JSON on its stdin (a pipe, closed once written: the wrapper reads to
    the end first thing)."""
    log = os.open(os.path.join(folder, rundir.WRAPPER_LOG),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-B", os.path.join(HERE, "wrapper.py"), folder],
            stdin=subprocess.PIPE, stdout=log, stderr=log, close_fds=True,
            start_new_session=True, cwd=folder)
    finally:
        os.close(log)
    try:
        process.stdin.write(json.dumps(secrets).encode("ascii"))
        process.stdin.close()
    except BrokenPipeError:
        pass  # the wrapper died at start: wait_started sees it, its log says why
    return process


class claim_lock(object):
    """The runs root's claim lock (see the module docstring), held in a ``with``."""

    def __enter__(self):
        root = rundir.runs_root()
        try:
            os.makedirs(root, 0o700, exist_ok=True)
            self.fd = os.open(os.path.join(root, rundir.CLAIM_LOCK),
                              os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise cannot_write(root, exc) from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc):
        os.close(self.fd)
        return False


def fence_path(run_id):
    return os.path.join(rundir.runs_root(), rundir.FENCES, run_id)


def live_sibling(run_id):
    """Another attempt of the same run that is live on this host, as (id, status)."""
    for other in rundir.attempts_of(run_id):
        if other == run_id:
            continue
        status = rundir.status(rundir.run_dir(other), other)
        if status["kind"] == "running":
            return other, status
    return None, None


def remove_folder(folder):
    """Remove a run folder that never got a job to run (a refused or fenced attempt)."""
    shutil.rmtree(folder, ignore_errors=True)


def claim(folder, run_id, job):
    """Under the claim lock: refuse a fenced attempt or a run with another live attempt,
    else write job.json. Returns False when this attempt was launched before."""
    with claim_lock():
        if os.path.exists(os.path.join(folder, rundir.JOB)):
            return False
        if os.path.exists(fence_path(run_id)):
            remove_folder(folder)
            raise Refused("attempt %s was given up after its launch went unanswered; "
                          "a newer attempt replaces it" % run_id)
        other, _status = live_sibling(run_id)
        if other is not None:
            remove_folder(folder)
            raise Refused("attempt %s of this run is still live on this host" % other)
        for stale in (rundir.REFUSED, rundir.WRAPPER, rundir.CANCEL_REQUEST):
            try:
                os.unlink(os.path.join(folder, stale))
            except FileNotFoundError:
                pass
        try:
            rundir.write_json(os.path.join(folder, rundir.JOB), job)
        except OSError as exc:
            remove_folder(folder)
            raise cannot_write(folder, exc) from None
    return True


def launch(request):
    folder = folder_of(request)
    run_id = request["run_id"]
    job = dict(check_job(request.get("job")))
    indices, uuids = check_gpus(request)
    secrets = check_secrets(request.get("secrets"))
    job.update(run_id=run_id, gpu_indices=indices, gpu_uuids=uuids)
    lock = None
    for _try in range(3):
        make_folder(folder)
        try:
            lock = lock_launch(folder, fcntl.LOCK_EX)
            break
        except FileNotFoundError:
            continue  # a refused launch of the same id removed the folder: make it again
    if lock is None:
        raise Refused("the run folder %s keeps disappearing" % rundir.display(folder))
    try:
        if not claim(folder, run_id, job):
            wait_started(folder)  # launched before: report, never start twice
            return rundir.status(folder, run_id)
        process = spawn_wrapper(folder, secrets)
        ticks = hostinfo.start_ticks(process.pid)
        rundir.write_json(os.path.join(folder, rundir.WRAPPER), {
            "pid": process.pid, "start_ticks": ticks, "boot_id": hostinfo.boot_id()})
        wait_started(folder, process)
        refused = rundir.read_json(os.path.join(folder, rundir.REFUSED))
        if refused is not None and rundir.read_exit_code(folder) is None:
            process.wait()
            # Nothing ran: no folder is left behind, and the same id may try again.
            remove_folder(folder)
            raise Refused(str(refused.get("message") or "a GPU lease is held"),
                          host_wide=refused.get("host_wide") is True)
        return rundir.status(folder, run_id)
    finally:
        os.close(lock)


def fence(run_ids):
    """Settle attempts whose launch went unanswered: one that got its job.json was
    launched (its status says how it is); one that did not is fenced for good, its folder
    (uploaded code) removed, and reported with every other attempt of its run here."""
    statuses = {}
    with claim_lock():
        for run_id in run_ids:
            folder = rundir.run_dir(run_id)
            if not os.path.exists(os.path.join(folder, rundir.JOB)):
                mark = fence_path(run_id)
                try:
                    os.makedirs(os.path.dirname(mark), 0o700, exist_ok=True)
                    os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
                except OSError as exc:
                    raise cannot_write(mark, exc) from None
                remove_folder(folder)
            result = rundir.status(folder, run_id)
            if result["kind"] == "unknown":
                result["detail"] = "the launch never reached this host; it cannot start now"
                result["fenced"] = True
            other, status = live_sibling(run_id)
            if other is not None:
                result["live_attempt"] = other
                result["live_status"] = status
            statuses[run_id] = result
    prune_fences()
    return statuses


# A late launch request comes from a runctl started while the app still waited, or soon
# after: a fence older than this has nothing left to stop.
FENCE_KEEP_S = 7 * 24 * 3600.0


def prune_fences():
    folder = os.path.join(rundir.runs_root(), rundir.FENCES)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    cutoff = time.time() - FENCE_KEEP_S
    for name in names:
        path = os.path.join(folder, name)
        try:
            if os.lstat(path).st_mtime < cutoff:
                os.unlink(path)
        except OSError:
            pass


def discard(request):
    """Remove the folder of an attempt that was never launched (an upload that failed)."""
    folder = folder_of(request)
    try:
        lock = lock_launch(folder, fcntl.LOCK_EX)
    except FileNotFoundError:
        return rundir.status(folder, request["run_id"])
    try:
        with claim_lock():
            if not os.path.exists(os.path.join(folder, rundir.JOB)):
                remove_folder(folder)
        return rundir.status(folder, request["run_id"])
    finally:
        os.close(lock)


def cancel(request):
    """Ask the wrapper to stop the job (TERM, grace, KILL); returns at once."""
    folder = folder_of(request)
    run_id = request["run_id"]
    grace = request.get("grace_s", 30.0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise BadRequest("grace_s must be a number >= 0")
    try:
        lock = lock_launch(folder, fcntl.LOCK_EX)
    except FileNotFoundError:
        return rundir.status(folder, run_id)
    try:
        result = rundir.status(folder, run_id)
        if result["kind"] != "running":
            return result
        rundir.write_json(os.path.join(folder, rundir.CANCEL_REQUEST),
                          {"grace_s": float(grace), "requested_at": time.time()})
        wrapper = rundir.read_json(os.path.join(folder, rundir.WRAPPER)) or {}
        state = rundir.read_json(os.path.join(folder, rundir.STATE)) or {}
        if hostinfo.alive(wrapper.get("pid"), wrapper.get("start_ticks")):
            os.kill(wrapper["pid"], signal.SIGTERM)
            result["detail"] = "cancel requested"
        elif hostinfo.alive(state.get("pid"), state.get("start_ticks")):
            # No wrapper left to finish the job off or record its end: TERM is all we do.
            os.killpg(state["pgid"], signal.SIGTERM)
            result["detail"] = "TERM sent to the job; its wrapper is gone, no exit code follows"
        return result
    finally:
        os.close(lock)


def reconcile(request):
    run_ids = request.get("run_ids")
    fenced = request.get("fence") or []
    if not isinstance(run_ids, list) or not isinstance(fenced, list):
        raise BadRequest("run_ids and fence must be lists")
    for run_id in run_ids + fenced:
        folder_of({"run_id": run_id})
    statuses = {}
    for run_id in run_ids:
        if run_id not in fenced:
            statuses[run_id] = rundir.status(rundir.run_dir(run_id), run_id)
    if fenced:
        statuses.update(fence(fenced))
    return statuses


def read_board(request):
    """The lab board: every member's reservations and demand, and who holds each GPU
    lease now (uid and pid from the kernel). With ``demand``, this user's own waiting
    demand is published first (renewing it), in the same call."""
    try:
        if request.get("demand") is not None:
            entries = request["demand"]
            if not isinstance(entries, list):
                raise BadRequest("demand must be a list")
            board.publish_demand(entries)
        found = board.read()
    except board.Unsafe as exc:
        raise Refused(str(exc), host_wide=True) from None
    except OSError as exc:
        raise cannot_write(board.board_dir(), exc) from None
    found["me"] = board.user_name(os.getuid())
    found["leases"] = []
    for name in leases.listed():
        info = leases.holder_info(name, timeout=leases.SAMPLE_PROBE_TIMEOUT_S)
        if info is not None:
            info["gpu_uuid"] = name
            found["leases"].append(info)
    return found


def reserve(request):
    """Reserve a GPU for this user until ``until`` (epoch seconds); refused when another
    lab member holds a reservation of it."""
    uuid = _text(request.get("gpu_uuid"), "gpu_uuid", allow_empty=False)
    until = request.get("until")
    if isinstance(until, bool) or not isinstance(until, (int, float)) or until <= time.time():
        raise BadRequest("until must be a time in the future (epoch seconds)")
    note = _text(request.get("note") or "", "note")[:board.MAX_NOTE]
    rules = policy.load()
    hours = rules.max_reservation_hours
    if hours is not None and until - time.time() > hours * 3600 + 60:
        raise Refused("the lab policy allows reservations of at most %g hours (%s)"
                      % (hours, rules.source))
    try:
        current = board.read()["reservations"]
        for item in current:
            if item["gpu_uuid"] == uuid and item["uid"] != os.getuid():
                raise Refused("GPU %s is already %s" % (uuid, board.describe(item)))
        mine = {r["gpu_uuid"] for r in current if r["uid"] == os.getuid()} | {uuid}
        if rules.max_reservations is not None and len(mine) > rules.max_reservations:
            raise Refused("the lab policy allows %d reserved GPU(s) per user (%s)"
                          % (rules.max_reservations, rules.source))
        entry = {"gpu_uuid": uuid, "until": float(until), "since": time.time(), "note": note}
        mine = board.update_reservations(
            lambda current: [r for r in current if r["gpu_uuid"] != uuid] + [entry])
    except board.Unsafe as exc:
        raise Refused(str(exc), host_wide=True) from None
    except OSError as exc:
        raise cannot_write(board.board_dir(), exc) from None
    return mine


def unreserve(request):
    """Lift this user's own reservation of a GPU (others' stay: they are theirs)."""
    uuid = _text(request.get("gpu_uuid"), "gpu_uuid", allow_empty=False)
    try:
        return board.update_reservations(
            lambda current: [r for r in current if r["gpu_uuid"] != uuid])
    except board.Unsafe as exc:
        raise Refused(str(exc), host_wide=True) from None
    except OSError as exc:
        raise cannot_write(board.board_dir(), exc) from None


def handle(raw):
    """One request (bytes) → one reply (dict)."""
    try:
        if len(raw) > MAX_REQUEST_BYTES:
            raise BadRequest("request of %d bytes is too large" % len(raw))
        try:
            request = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
            raise BadRequest("request is not JSON: %s" % str(exc)[:300]) from None
        if not isinstance(request, dict):
            raise BadRequest("request must be a JSON object")
        op = request.get("op")
        if op == "launch":
            return {"ok": True, "status": launch(request)}
        if op == "cancel":
            return {"ok": True, "status": cancel(request)}
        if op == "reconcile":
            return {"ok": True, "statuses": reconcile(request)}
        if op == "board":
            return {"ok": True, "board": read_board(request),
                    "policy": policy.load().as_dict()}
        if op == "reserve":
            return {"ok": True, "reservations": reserve(request)}
        if op == "unreserve":
            return {"ok": True, "reservations": unreserve(request)}
        if op == "discard":
            return {"ok": True, "status": discard(request)}
        if op == "space":
            return {"ok": True, "free_bytes": free_space()}
        raise BadRequest("unknown op %r" % (op,))
    except Refused as exc:
        reply = {"ok": False, "refused": str(exc)}
        if exc.host_wide:
            reply["host_wide"] = True
        return reply
    except BadRequest as exc:
        return {"ok": False, "error": str(exc)}


def main():
    reply = handle(sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1))
    sys.stdout.write(json.dumps(reply, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
