"""Slurm, driven from a cluster's login node: a run becomes one batch job that runs the
Labdeck wrapper inside its allocation, and the cluster's own commands say how it goes.

Stdlib only, Python >= 3.8. Every command is an argument list (never a shell line);
names and values from a job are checked before they reach one. Slurm decides where and
when a job runs; this module only asks and reads:
- ``sbatch_argv`` — the job's resources (``--gres=gpu[:type]:N``, ``--time``,
  partition / account / qos) as sbatch options; the batch script (``batch_script``) only
  starts the wrapper on the run's folder and holds no secret;
- ``query`` — one ``squeue`` for the jobs Slurm still schedules, and one ``scontrol show
  job`` (or ``sacct`` where accounting is on) for the ones it has finished, mapped to the
  kinds a run can be in (``SLURM_KINDS``).
"""

import math
import re
import subprocess

COMMAND_TIMEOUT_S = 30.0
# Slurm's job states → what the run is: still waiting, running, ended (how), or lost
# (its node failed or it was preempted: re-queued like a run on a rebooted workstation).
SLURM_KINDS = {
    "PENDING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending",
    "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
    "SUSPENDED": "running", "STAGE_OUT": "running", "RESIZING": "running",
    "COMPLETED": "finished", "FAILED": "finished", "OUT_OF_MEMORY": "finished",
    "CANCELLED": "cancelled", "TIMEOUT": "timed_out", "DEADLINE": "timed_out",
    "NODE_FAIL": "lost", "PREEMPTED": "lost", "BOOT_FAIL": "lost",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
_JOB_ID_RE = re.compile(r"^\d+(?:_\d+)?$")


class SlurmError(Exception):
    """Slurm refused or is missing; the message is Slurm's own (or says what is missing)."""


def _checked(value, what):
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError("%s must be a Slurm name (letters, digits, _ . + -), got %r"
                         % (what, value))
    return value


def sbatch_argv(run_id, run_dir, gpus, gpu_type=None, time_limit_s=None,
                partition=None, account=None, qos=None):
    """The sbatch command for a run (the script itself comes on stdin)."""
    argv = ["sbatch", "--parsable", "--job-name=labdeck-" + _checked(run_id, "run id"),
            "--chdir=" + run_dir, "--output=" + run_dir + "/slurm.out",
            "--open-mode=append", "--no-requeue"]
    if gpus:
        kind = _checked(gpu_type, "GPU type")
        argv.append("--gres=gpu:%s%d" % (kind + ":" if kind else "", int(gpus)))
    if time_limit_s:
        # Slurm counts whole minutes; the wrapper enforces the exact limit itself.
        argv.append("--time=%d" % max(1, math.ceil(time_limit_s / 60.0) + 1))
    for option, value in (("partition", partition), ("account", account), ("qos", qos)):
        if value is not None:
            argv.append("--%s=%s" % (option, _checked(value, option)))
    return argv


def batch_script(python, wrapper, run_dir):
    """The batch script: the wrapper on the run's folder (Slurm keeps this text; it holds
    paths only). ``exec`` so Slurm's signals reach the wrapper directly."""
    for path in (python, wrapper, run_dir):
        if "'" in path or "\n" in path:
            raise ValueError("a path Slurm would run cannot hold quotes or newlines: %r"
                             % path)
    return "#!/bin/sh\nexec '%s' '%s' '%s'\n" % (python, wrapper, run_dir)


def _run(argv, stdin=None, env=None):
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, env=env,
                              timeout=COMMAND_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise SlurmError("%s is not installed on this login node" % argv[0]) from None
    except subprocess.TimeoutExpired:
        raise SlurmError("%s did not answer in %d s" % (argv[0], COMMAND_TIMEOUT_S)) from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip() or "exit %d" % done.returncode
        raise SlurmError(message.splitlines()[-1][:500])
    return done.stdout.decode("utf-8", "replace")


def submit(argv, script, env=None):
    """Submit; returns Slurm's job id. SlurmError carries sbatch's own message."""
    out = _run(argv, stdin=script.encode("utf-8"), env=env).strip()
    job_id = out.split(";")[0]
    if not _JOB_ID_RE.match(job_id):
        raise SlurmError("sbatch answered %r, not a job id" % out[:200])
    return job_id


def cancel(job_id, signal_name="TERM", env=None):
    """Send ``signal_name`` to the whole job (its batch step and steps)."""
    if not _JOB_ID_RE.match(str(job_id)):
        raise ValueError("not a Slurm job id: %r" % (job_id,))
    _run(["scancel", "--signal=" + signal_name, "--full", str(job_id)], env=env)


def parse_squeue(text):
    """``squeue -h -o %i|%T|%r`` → {job id: {"state", "reason"}}."""
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and _JOB_ID_RE.match(parts[0]):
            found[parts[0]] = {"state": parts[1].split()[0] if parts[1] else "",
                               "reason": parts[2] if parts[2] not in ("None", "(null)") else ""}
    return found


def parse_scontrol(text):
    """``scontrol show job -o`` (one job per line) → {job id: {"state", "reason",
    "exit_code", "signal"}}."""
    found = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        job_id = fields.get("JobId", "")
        if not _JOB_ID_RE.match(job_id):
            continue
        code, _, signal = fields.get("ExitCode", "0:0").partition(":")
        found[job_id] = {
            "state": fields.get("JobState", ""),
            "reason": "" if fields.get("Reason") in (None, "None") else fields["Reason"],
            "exit_code": int(code) if code.isdigit() else None,
            "signal": int(signal) if signal.isdigit() else None,
        }
    return found


def query(job_ids, env=None):
    """What Slurm says of ``job_ids``: {id: {"state", "kind", "reason", "exit_code"}};
    a job it no longer knows is left out."""
    wanted = [j for j in job_ids if _JOB_ID_RE.match(str(j))]
    if not wanted:
        return {}
    # --me: one call whatever the number of runs (squeue -j fails on ids it forgot).
    listed = parse_squeue(_run(["squeue", "-h", "--me", "-o", "%i|%T|%r"], env=env))
    live = {j: listed[j] for j in wanted if j in listed}
    ended = [j for j in wanted if j not in live or live[j]["state"] not in
             ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]
    details = parse_scontrol(_run(["scontrol", "show", "job", "-o"], env=env)) if ended else {}
    found = {}
    for job_id in wanted:
        info = details.get(job_id) if job_id in ended else None
        info = info or live.get(job_id)
        if info is None:
            continue
        state = info["state"]
        found[job_id] = {"state": state, "kind": SLURM_KINDS.get(state, "running"),
                         "reason": info.get("reason", ""),
                         "exit_code": info.get("exit_code")}
    return found
