"""The run wrapper: one detached process per run that leases the run's GPUs, starts the
job in its own process group, enforces cancel and the time limit, and writes the exit code.

    python3 -B wrapper.py <run dir>

Stdlib only, Python >= 3.8. Started by runctl.py in a new session with no terminal and
every stream redirected, so it outlives the SSH channel, the app and the network. The
leases are flocks held for as long as this process lives. The job is
``bash -l -c '<setup>\nexec "$@"' labdeck-job <argv…>``: arguments are positional
parameters, passed byte for byte and never parsed by a shell. The job's first process
is killed by the kernel should this wrapper be killed (PR_SET_PDEATHSIG), so a job never
runs on without its lease; a grandchild that calls setsid() itself escapes the group and
that guard alike.

The run's secrets arrive as one JSON object on stdin (a pipe from runctl.py), read to its
end before anything else; they go into the job's environment and nowhere else: not
job.json, not a state file, not this wrapper's own environment or log.
"""

import errno
import fcntl
import json
import os
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

DEFAULT_GRACE_S = 30.0
# After the job's first process ends, the rest of its group gets TERM, then KILL after:
LEFTOVER_GRACE_S = 2.0
POLL_S = 0.05
EXIT_REFUSED = 75
EXIT_CANNOT_START = 127
PR_SET_PDEATHSIG = 1
# Room kept in the run folder for the markers and exit_code (a few pages on any disk).
RESERVE_BYTES = 64 * 1024
CLIENT_DIR = ".client"  # in the run folder; holds only labdeck.py
CLIENT_MODULE = "labdeck.py"
# How often a running job's GPU time is added to the user's GPU-hours on the lab board
# (and once more when it ends): a wrapper killed outright loses at most this much.
USAGE_FLUSH_S = 120.0


def log(message):
    sys.stderr.write("%s labdeck-wrapper: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), message))
    sys.stderr.flush()


def _prctl():
    """libc's prctl, or None where ctypes or libc are not usable."""
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:
        return None


def job_argv(job):
    """The command line of the job: login bash running setup lines, then the command."""
    bash = shutil.which("bash") or "/bin/bash"
    setup = [line for line in job.get("setup") or [] if line.strip()]
    # A failing setup line (a missing venv) stops the run before the command.
    lines = ["set -e", *setup, "set +e"] if setup else []
    if job.get("shell") is not None:
        return [bash, "-l", "-c", "\n".join([*lines, job["shell"]])]
    script = "\n".join([*lines, 'exec "$@"'])
    return [bash, "-l", "-c", script, "labdeck-job", *job["argv"]]


def read_secrets(stream):
    """``{NAME: value}`` from ``stream`` (read to its end), or None when it is not that;
    the reason logged never quotes what was read."""
    try:
        secrets = json.loads(stream.read().decode("ascii"))
    except (OSError, ValueError) as exc:
        log("unreadable secrets on stdin (%s)" % type(exc).__name__)
        return None
    if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
        log("secrets on stdin are not an object of strings")
        return None
    return secrets


def job_env(job, folder, secrets=None):
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(job.get("env") or {})
    env.update(secrets or {})
    indices = ",".join(str(i) for i in job.get("gpu_indices") or [])
    # Set after the job's own env: a run must never see GPUs other than its own.
    env["CUDA_VISIBLE_DEVICES"] = indices
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["LABDECK_RUN_DIR"] = folder
    env["LABDECK_RUN_ID"] = job["run_id"]
    env["LABDECK_TB_DIR"] = os.path.join(folder, rundir.TB)
    # After the job's own entries: a module of the user's named labdeck wins.
    paths = [p for p in (env.get("PYTHONPATH") or "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, os.path.join(folder, CLIENT_DIR)])
    if job.get("sim_host"):
        env["LABDECK_SIM_GPUS"] = indices
        env["LABDECK_SIM_HOST"] = job["sim_host"]
    return env


def install_client(folder):
    """Copy the ``labdeck`` client module into the run's own folder, which the job gets
    on PYTHONPATH: a folder with nothing else in it (the agent's folder would shadow
    modules such as ``wire``), and a copy the run keeps however the agent is updated."""
    target = os.path.join(folder, CLIENT_DIR)
    try:
        os.makedirs(target, 0o700, exist_ok=True)
        with open(os.path.join(HERE, CLIENT_MODULE), "rb") as fh:
            source = fh.read()
        rundir.write_atomic(os.path.join(target, CLIENT_MODULE), source)
    except OSError as exc:
        log("cannot install the labdeck module for the job: %s" % exc)


def exit_code_of(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255


class Wrapper:
    def __init__(self, folder):
        self.folder = folder
        self.secrets = {}
        self.cancel_pending = False
        self.kill_at = None
        self.cancelled = False
        self.timed_out = False
        self.held = []
        self.usage_from = None

    def path(self, name):
        return os.path.join(self.folder, name)

    def on_term(self, _signum, _frame):
        self.cancel_pending = True

    def grace(self, job):
        request = rundir.read_json(self.path(rundir.CANCEL_REQUEST)) or {}
        for value in (request.get("grace_s"), job.get("kill_grace_s")):
            if not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 0:
                return float(value)
        return DEFAULT_GRACE_S

    def refuse(self, message, uuid=None, holder=None, host_wide=False):
        """Record why the run cannot start; ``host_wide``: no run can start on this host
        until someone fixes it (leases cannot be taken at all), not only this one."""
        rundir.write_json(self.path(rundir.REFUSED), {
            "uuid": uuid, "holder": holder, "message": message, "host_wide": host_wide})
        log("refused: " + message)
        return EXIT_REFUSED

    def reservation(self, uuids):
        """A lab reservation of one of the run's GPUs (checked with the leases held, so
        no other Labdeck can slip in between), or None."""
        try:
            return board.reservation_of(uuids)
        except (board.Unsafe, OSError) as exc:
            # Reservations cannot be read here; leases still keep runs apart.
            log("lab board not read: %s" % exc)
            return None

    def over_quota(self, uuids):
        """The lab policy's per-user GPU quota, checked with this run's leases held (two
        runs of one user starting together both count each other: neither slips past)."""
        rules = policy.load()
        user = board.user_name(os.getuid())
        limit = rules.gpu_quota(user)
        if limit is None:
            return ""
        others = leases.held_by_uid(os.getuid(), skip=uuids)
        if others + len(set(uuids)) <= limit:
            return ""
        return ("quota: %s holds %d GPU(s) on this host and the lab policy allows %d per "
                "user (%s)" % (user, others, limit, rules.source))

    def count_usage(self, now=None):
        """Add the GPU time since the last count to this user's GPU-hours."""
        now = time.time() if now is None else now
        if self.usage_from is None or not self.held:
            return
        start, self.usage_from = self.usage_from, now
        try:
            board.add_usage(len(self.held), start, now)
        except (board.Unsafe, OSError, ValueError) as exc:
            log("GPU-hours not recorded: %s" % exc)

    def release(self):
        for lease in self.held:
            lease.close()
        self.held = []

    def reserve(self):
        """Keep room for the end of the run: should the disk fill up while the job runs,
        deleting this file frees what the markers and exit_code need."""
        try:
            rundir.write_atomic(self.path(rundir.RESERVE), b"\0" * RESERVE_BYTES)
        except OSError as exc:
            log("cannot keep room for the exit code: %s" % exc)

    def finish(self, code):
        try:
            self.write_end(code, no_space=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The disk is full: give back the room kept for this, say so, write again.
            try:
                os.unlink(self.path(rundir.RESERVE))
            except OSError:
                pass
            self.write_end(code, no_space=True)
        try:
            os.unlink(self.path(rundir.RESERVE))
        except OSError:
            pass
        log("exit code %d written" % code)
        return 0

    def write_end(self, code, no_space):
        # Markers first: whoever sees exit_code sees how the run ended.
        if self.cancelled:
            rundir.write_atomic(self.path(rundir.CANCELLED), b"")
        if self.timed_out:
            rundir.write_atomic(self.path(rundir.TIMED_OUT), b"")
        if no_space:
            rundir.write_atomic(self.path(rundir.NO_SPACE), b"")
        rundir.write_atomic(self.path(rundir.EXIT_CODE), ("%d\n" % code).encode())

    def stop_group(self, pgid, how, grace_s):
        """TERM the job's group now, KILL it when the grace period is over."""
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + grace_s
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)
        log("%s: TERM sent to group %d, KILL in %.1f s" % (how, pgid, grace_s))

    def sweep(self, pgid):
        """Once the job's first process has ended, nothing else of the run may go on
        holding the GPU: TERM what is left of the group, then KILL it."""
        if not hostinfo.group_members(pgid):
            return
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        if self.kill_at is not None:
            deadline = min(deadline, self.kill_at)
        while hostinfo.group_members(pgid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass

    def hold_life_lock(self):
        """Hold the folder's wrapper lock until this process ends (the descriptor is
        close-on-exec: the job never inherits it), so reconcile sees a live wrapper even
        when runctl died before recording its pid."""
        try:
            fd = os.open(self.path(rundir.WRAPPER_LOCK),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            log("cannot hold the wrapper lock: %s" % exc)
            return None
        return fd

    def run(self):
        self.life_lock = self.hold_life_lock()
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        secrets = read_secrets(sys.stdin.buffer)
        job = rundir.read_json(self.path(rundir.JOB))
        if job is None:
            log("no readable %s" % rundir.JOB)
            return 2
        if secrets is None:
            return self.finish(EXIT_CANNOT_START)
        self.secrets = secrets
        try:
            self.held = leases.acquire(job.get("gpu_uuids") or [], job["run_id"])
        except leases.Held as exc:
            return self.refuse(str(exc), exc.uuid, leases.describe(exc.holder))
        except (OSError, ValueError) as exc:
            return self.refuse("cannot take a GPU lease: %s" % (exc,), host_wide=True)
        uuids = job.get("gpu_uuids") or []
        reserved = self.reservation(uuids)
        if reserved is not None:
            self.release()
            return self.refuse("GPU %s is %s" % (reserved["gpu_uuid"], board.describe(reserved)),
                               reserved["gpu_uuid"], reserved["user"])
        over = self.over_quota(uuids)
        if over:
            self.release()
            return self.refuse(over)
        log("leased %d GPU(s) for run %s" % (len(self.held), job["run_id"]))
        self.reserve()
        if self.cancel_pending or os.path.exists(self.path(rundir.CANCEL_REQUEST)):
            self.cancelled = True
            return self.finish(128 + signal.SIGTERM)
        return self.supervise(job)

    def start(self, job):
        """The job's first process, or None when it cannot start (reason in output.log)."""
        out = os.open(self.path(rundir.OUTPUT),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        parent = os.getpid()
        prctl = _prctl()

        def die_with_wrapper():
            if prctl is not None:
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the wrapper died before prctl took effect
                os._exit(EXIT_CANNOT_START)

        try:
            os.makedirs(self.path(rundir.TB), 0o700, exist_ok=True)
            install_client(self.folder)
            return subprocess.Popen(
                job_argv(job), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=job_env(job, self.folder, self.secrets),
                cwd=rundir.job_cwd(job, self.folder),
                close_fds=True, start_new_session=True, preexec_fn=die_with_wrapper)
        except (OSError, ValueError) as exc:
            os.write(out, ("labdeck: cannot start the job: %s\n" % exc).encode("utf-8"))
            log("cannot start the job: %s" % exc)
            return None
        finally:
            os.close(out)

    def supervise(self, job):
        process = self.start(job)
        if process is None:
            return self.finish(EXIT_CANNOT_START)
        started = time.monotonic()
        self.usage_from = time.time()
        pgid = process.pid  # start_new_session: the job leads its own session and group
        ticks = hostinfo.start_ticks(process.pid)
        rundir.write_json(self.path(rundir.STATE), {
            "pid": process.pid, "pgid": pgid, "start_ticks": ticks,
            "start_time": hostinfo.ticks_to_epoch(ticks), "boot_id": hostinfo.boot_id(),
            "wrapper_pid": os.getpid(), "wrapper_start_ticks": hostinfo.start_ticks(os.getpid()),
        })
        log("job started: pid %d" % process.pid)
        limit = job.get("time_limit_s")
        while True:
            try:
                pid, status = os.waitpid(process.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = process.pid, 255 << 8
            if pid == process.pid:
                break
            if self.cancel_pending:
                self.cancel_pending = False
                self.cancelled = True
                self.stop_group(pgid, "cancel", self.grace(job))
            if limit is not None and not self.timed_out and not self.cancelled \
                    and time.monotonic() - started >= limit:
                self.timed_out = True
                self.stop_group(pgid, "time limit of %g s reached" % limit, self.grace(job))
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except OSError:
                    pass
                log("grace period over: KILL sent to group %d" % pgid)
                self.kill_at = float("inf")
            if time.time() - self.usage_from >= USAGE_FLUSH_S:
                self.count_usage()
            # Sleeps POLL_S, waking at once to tell a probing agent who holds the GPUs.
            leases.serve_all(self.held, POLL_S)
        process.returncode = exit_code_of(status)  # reaped by hand: keep Popen quiet
        self.sweep(pgid)
        self.count_usage()
        return self.finish(exit_code_of(status))


def main(argv):
    if len(argv) != 1:
        sys.stderr.write("usage: wrapper.py RUN_DIR\n")
        return 2
    folder = os.path.abspath(argv[0])
    try:
        return Wrapper(folder).run()
    except Exception as exc:  # the log is the only witness
        import traceback
        traceback.print_exc()
        log("failed: %r" % (exc,))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
