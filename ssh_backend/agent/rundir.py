"""A run's folder on a host, ``~/.labdeck/runs/<run-id>/``: the names of its files,
atomic writes, and the run's status read from them (the reconcile rules).

Stdlib only, Python >= 3.8: shared by runctl.py and wrapper.py.

    job.json      the job as launched (written by runctl before the wrapper starts)
    wrapper.json  the wrapper's pid, start ticks and boot id (runctl, right after spawn)
    state.json    the job's pid, pgid, start ticks/time and boot id (wrapper, once started)
    exit_code     written last, atomically; 128+N for a death by signal N
    cancelled, timed_out   markers, written before exit_code
    no_space      marker: the disk was full when the run ended (its output may be cut)
    .exit.reserve room the wrapper keeps for the files above, freed if the disk fills
    refused.json  the wrapper found a GPU lease held (runctl then removes job.json)
    cancel.json   a cancel request (grace period) for the wrapper to read on SIGTERM
    output.log    the job's stdout+stderr; wrapper.log the wrapper's own messages
    code/         the uploaded snapshot; tb/ a TensorBoard folder offered to the job
"""

import errno
import fcntl
import json
import os
import re

import hostinfo

RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{3,63}$")

JOB = "job.json"
WRAPPER = "wrapper.json"
STATE = "state.json"
EXIT_CODE = "exit_code"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
NO_SPACE = "no_space"
RESERVE = ".exit.reserve"
REFUSED = "refused.json"
CANCEL_REQUEST = "cancel.json"
OUTPUT = "output.log"
WRAPPER_LOG = "wrapper.log"
LAUNCH_LOCK = ".launch.lock"
# Held by the wrapper for its whole life: the kernel's word that it is alive, even before
# runctl recorded its pid in wrapper.json (runctl killed right after the spawn).
WRAPPER_LOCK = ".wrapper.lock"
# In the runs root: held for the moment a launch claims its attempt or a reconcile fences
# one, so "is any attempt of this run live?" and "may this attempt still start?" are
# answered once for every attempt of every run.
CLAIM_LOCK = ".claim.lock"
# In the runs root: one empty file per attempt whose launch went unanswered and was then
# given up by the app; a launch request for it that arrives late is refused.
FENCES = ".fences"
ATTEMPT_SUFFIX = re.compile(r"-a[0-9]+$")
CODE = "code"
TB = "tb"


def job_cwd(job, folder):
    """Where the job runs: its ``workdir`` (under the home folder), else its uploaded code,
    else the home folder."""
    workdir = job.get("workdir")
    home = os.path.expanduser("~")
    if not workdir:
        code = os.path.join(folder, CODE)
        return code if os.path.isdir(code) else home
    return os.path.join(home, os.path.expanduser(workdir))


def runs_root():
    return os.path.join(os.path.expanduser("~"), ".labdeck", "runs")


def display(path):
    """A path as the user knows it: ``~/.labdeck/runs/…``."""
    home = os.path.expanduser("~")
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home):]
    return path


def run_dir(run_id):
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise ValueError("not a valid run id: %r" % (run_id,))
    return os.path.join(runs_root(), run_id)


def base_id(run_id):
    """The run an attempt id belongs to (``r123-a2`` → ``r123``)."""
    return ATTEMPT_SUFFIX.sub("", run_id)


def attempts_of(run_id, root=None):
    """Ids of the folders in the runs root that are attempts of ``run_id``'s run."""
    base = base_id(run_id)
    try:
        names = os.listdir(root or runs_root())
    except OSError:
        return []
    return sorted(name for name in names
                  if (name == base or (name.startswith(base + "-a") and base_id(name) == base))
                  and RUN_ID_RE.fullmatch(name))


def write_atomic(path, data, mode=0o600):
    """Write ``data`` to a temporary file beside ``path``, fsync, rename over ``path``:
    a reader sees the old content or the whole new one, never a part."""
    temp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(temp, path)


def write_json(path, obj):
    write_atomic(path, (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path):
    """The object in a JSON file; None when missing, unreadable or not an object."""
    try:
        with open(path, "rb") as fh:
            obj = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_exit_code(folder):
    try:
        with open(os.path.join(folder, EXIT_CODE), "rb") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def last_line(path, limit=4096):
    """The last non-empty line of a text file ('' when none), for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def locked(folder, name):
    """Whether some process holds the flock of ``folder/name`` right now."""
    try:
        fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


def _num(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def status(folder, run_id):
    """The run's status as a JSON-ready dict (``kind``: running, finished, failed, lost,
    unknown), by the reconcile rules: exit code → finished; boot id changed → lost;
    wrapper or job alive with its recorded start time → running; else failed."""
    result = {"run_id": run_id, "kind": "unknown", "exit_code": None, "pid": None,
              "pgid": None, "start_time": None, "boot_id": None, "detail": "",
              "cancelled": False, "timed_out": False, "refused": False}
    if not os.path.isdir(folder):
        result["detail"] = "no folder %s on the host" % display(folder)
        return result
    state = read_json(os.path.join(folder, STATE)) or {}
    wrapper = read_json(os.path.join(folder, WRAPPER)) or {}
    result["pid"] = _num(state.get("pid"))
    result["pgid"] = _num(state.get("pgid"))
    result["start_time"] = _num(state.get("start_time"))
    booted = state.get("boot_id") or wrapper.get("boot_id")
    result["boot_id"] = booted if isinstance(booted, str) else None

    def finished(code):
        result["kind"] = "finished"
        result["exit_code"] = code
        result["cancelled"] = os.path.exists(os.path.join(folder, CANCELLED))
        result["timed_out"] = os.path.exists(os.path.join(folder, TIMED_OUT))
        if result["cancelled"]:
            result["detail"] = "cancelled"
        elif result["timed_out"]:
            result["detail"] = "stopped at its time limit"
        elif os.path.exists(os.path.join(folder, NO_SPACE)):
            result["detail"] = ("the disk holding %s filled up while it ran; its output "
                                "may be cut short" % display(folder))
        return result

    code = read_exit_code(folder)
    if code is not None:
        return finished(code)
    if not os.path.exists(os.path.join(folder, JOB)):
        refused = read_json(os.path.join(folder, REFUSED))
        if refused and isinstance(refused.get("message"), str):
            result["detail"] = "the launch was refused: " + refused["message"]
            result["refused"] = True
        else:
            result["detail"] = "the run was never launched on this host"
        return result
    if result["boot_id"] is not None and result["boot_id"] != hostinfo.boot_id():
        result["kind"] = "lost"
        result["detail"] = "the host rebooted while the run was running"
        return result
    wrapper_alive = hostinfo.alive(wrapper.get("pid"), wrapper.get("start_ticks")) or \
        locked(folder, WRAPPER_LOCK)
    job_alive = hostinfo.alive(state.get("pid"), state.get("start_ticks"))
    if wrapper_alive or job_alive:
        result["kind"] = "running"
        if not state:
            result["detail"] = "starting"
        elif not wrapper_alive:
            result["detail"] = "the wrapper is gone; the job runs on unrecorded"
        return result
    if not wrapper and locked(folder, LAUNCH_LOCK):
        result["kind"] = "running"
        result["detail"] = "being launched"
        return result
    # The wrapper may have written the exit code and exited since we first looked.
    code = read_exit_code(folder)
    if code is not None:
        return finished(code)
    result["kind"] = "failed"
    refused = read_json(os.path.join(folder, REFUSED))
    if refused and isinstance(refused.get("message"), str):
        # Refused after runctl stopped waiting for it (a very slow start): the job never
        # ran, so the run may go back to the queue.
        result["detail"] = "the launch was refused: " + refused["message"]
        result["refused"] = True
    elif not wrapper:
        result["detail"] = "the launch was interrupted before the wrapper started"
    else:
        why = last_line(os.path.join(folder, WRAPPER_LOG))
        result["detail"] = "the wrapper died without writing an exit code" + (
            ": " + why if why else "")
    return result
