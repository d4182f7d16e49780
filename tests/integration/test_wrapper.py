"""The run wrapper as real processes on this machine: output, exit codes, environment,
leases, cancel of a whole process tree, time limit, and arguments that reach the job byte
for byte without ever being run by a shell."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.harness.runhost import (
    AGENT_DIR,
    RunHost,
    pid_gone,
    process_group,
    python_job,
    wait_until,
)

sys.path.insert(0, str(AGENT_DIR))
import leases


def finished(host: RunHost, run_id: str) -> dict[str, object]:
    return host.wait_kind(run_id, "finished")


def test_output_and_exit_codes(host: RunHost) -> None:
    code = "import sys; print('out line'); print('err line', file=sys.stderr); sys.exit(3)"
    reply = host.launch("exit-three", python_job(code))
    assert reply["ok"] and reply["status"]["kind"] in ("running", "finished")
    status = finished(host, "exit-three")
    assert status["exit_code"] == 3 and not status["cancelled"]
    assert host.output("exit-three") == b"out line\nerr line\n"
    assert host.launch("exit-zero", python_job("print('fine')"))["ok"]
    assert finished(host, "exit-zero")["exit_code"] == 0
    assert host.output("exit-zero") == b"fine\n"
    # A death by signal N is recorded as 128+N.
    assert host.launch("killed-9", python_job("import os; os.kill(os.getpid(), 9)"))["ok"]
    assert finished(host, "killed-9")["exit_code"] == 128 + 9
    folder = host.run_dir("exit-three")
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("job.json", "state.json", "exit_code", "output.log"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    state = host.state("exit-three")
    assert state["pid"] == state["pgid"] and state["boot_id"]
    assert status["pid"] == state["pid"] and isinstance(status["start_time"], float)


def test_environment_workdir_and_setup(host: RunHost) -> None:
    dump = "import json,os; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))"
    reply = host.launch(
        "env-check", python_job(dump), gpus=((1, "GPU-a"), (3, "GPU-b")),
        env={"MY_VAR": "x y", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, sim_host="ws-9",
    )
    assert reply["ok"], reply
    finished(host, "env-check")
    seen = json.loads(host.output("env-check"))
    env = seen["env"]
    # The job's own env cannot widen its GPUs.
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["LABDECK_RUN_DIR"] == str(host.run_dir("env-check"))
    assert env["LABDECK_RUN_ID"] == "env-check"
    assert env["LABDECK_SIM_GPUS"] == "1,3" and env["LABDECK_SIM_HOST"] == "ws-9"
    assert env["PYTHONUNBUFFERED"] == "1" and env["MY_VAR"] == "x y"
    assert seen["cwd"] == str(host.home)  # no snapshot, no workdir: $HOME
    # Setup lines run in the same shell before the command; a failing one stops the run.
    workdir = host.home / "proj"
    workdir.mkdir()
    reply = host.launch("setup-ok", ["sh", "-c", 'echo "$FROM_SETUP $(pwd)"'],
                        setup=["export FROM_SETUP=activated"], workdir="~/proj")
    assert reply["ok"]
    assert finished(host, "setup-ok")["exit_code"] == 0
    assert host.output("setup-ok") == f"activated {workdir}\n".encode()
    host.launch("setup-bad", ["true"], setup=["false", "echo never"])
    assert finished(host, "setup-bad")["exit_code"] == 1
    assert b"never" not in host.output("setup-bad")
    host.launch("shell-mode", shell="echo one; echo two >&2; exit 4")
    assert finished(host, "shell-mode")["exit_code"] == 4
    assert host.output("shell-mode") == b"one\ntwo\n"
    host.launch("no-workdir", ["true"], workdir="/nonexistent/dir")
    assert finished(host, "no-workdir")["exit_code"] == 127
    assert b"cannot start the job" in host.output("no-workdir")


def test_lease_held_for_the_run_and_released_after(host: RunHost) -> None:
    go = host.root / "go"
    code = f"import os,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)"
    reply = host.launch("leaser-1", python_job(code), gpus=((0, "GPU-l0"), (1, "GPU-l1")))
    assert reply["ok"] and reply["status"]["kind"] == "running"
    root = host.lease_ns
    assert leases.holder("GPU-l0", root) == "leaser-1"
    assert leases.holder("GPU-l1", root) == "leaser-1"
    assert leases.holder("GPU-other", root) is None
    go.touch()
    finished(host, "leaser-1")
    wait_until(lambda: leases.holder("GPU-l0", root) is None, 5, "lease release")
    assert leases.holder("GPU-l1", root) is None


def _tree_pids(host: RunHost, run_id: str, count: int) -> list[int]:
    pgid = host.state(run_id)["pgid"]
    found: list[int] = []

    def members() -> bool:
        found[:] = [int(p) for p in os.listdir("/proc")
                    if p.isdigit() and process_group(p) == pgid]
        return len(found) >= count

    wait_until(members, 5, f"{count} processes in the job's group")
    return found


def test_cancel_kills_the_whole_tree_and_records_the_exit_code(host: RunHost) -> None:
    reply = host.launch("cancel-me", shell="sleep 300 & sleep 300 & wait")
    assert reply["ok"], reply
    pids = _tree_pids(host, "cancel-me", 3)  # bash and two sleeping grandchildren
    wrapper = json.loads((host.run_dir("cancel-me") / "wrapper.json").read_text())["pid"]
    answer = host.ctl({"op": "cancel", "run_id": "cancel-me", "grace_s": 5})
    assert answer["ok"] and answer["status"]["kind"] == "running"
    assert answer["status"]["detail"] == "cancel requested"
    status = finished(host, "cancel-me")
    assert status["cancelled"] and status["exit_code"] == 128 + signal.SIGTERM
    wait_until(lambda: all(pid_gone(p) for p in [*pids, wrapper]), 5, "the tree to die")
    # Cancel after the end changes nothing.
    again = host.ctl({"op": "cancel", "run_id": "cancel-me"})
    assert again["status"]["kind"] == "finished"


def test_cancel_kills_a_job_that_ignores_term_after_the_grace(host: RunHost) -> None:
    host.launch("stubborn", shell="trap '' TERM; sleep 300 & sleep 300 & wait")
    pids = _tree_pids(host, "stubborn", 3)
    host.ctl({"op": "cancel", "run_id": "stubborn", "grace_s": 0.5})
    status = finished(host, "stubborn")
    assert status["cancelled"] and status["exit_code"] == 128 + signal.SIGKILL
    wait_until(lambda: all(pid_gone(p) for p in pids), 5, "the tree to die")


def test_time_limit_stops_the_job(host: RunHost) -> None:
    reply = host.launch("too-long", ["sleep", "300"], time_limit_s=0.5)
    assert reply["ok"]
    pid = host.state("too-long")["pid"]
    status = finished(host, "too-long")
    assert status["timed_out"] and not status["cancelled"]
    assert status["exit_code"] == 128 + signal.SIGTERM
    assert pid_gone(pid)


def test_wrapper_killed_takes_the_job_along_and_reads_as_failed(host: RunHost) -> None:
    host.launch("orphaned", ["sleep", "300"])
    job = host.state("orphaned")["pid"]
    wrapper = host.state("orphaned")["wrapper_pid"]
    os.kill(wrapper, signal.SIGKILL)
    wait_until(lambda: pid_gone(job), 5, "the job to die with its wrapper")
    status = host.wait_kind("orphaned", "failed")
    assert "without writing an exit code" in status["detail"]
    assert leases.holder("GPU-test-0", host.lease_ns) is None


# Text that a shell would act on if it ever parsed it; the job must see it verbatim.
_ARG = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(_ARG, max_size=5), values=st.lists(_ARG, max_size=3))
@example(args=["$(touch PWNED)", "`touch PWNED`", "a; touch PWNED", "'\"", "x\ny"],
         values=["$(touch PWNED)", "line1\nline2", "ünï ☃ $HOME"])
@example(args=["", " ", "--flag=$((1+1))", "*", "~", "\\"], values=["", "; rm -rf /"])
def test_arguments_and_env_reach_the_job_verbatim(args: list[str], values: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        host = RunHost(root)
        try:
            dump = (
                "import json,os,sys\n"
                "env={k: v for k, v in os.environ.items() if k.startswith('T_')}\n"
                "open(os.environ['LABDECK_RUN_DIR']+'/seen.json','w')"
                ".write(json.dumps({'argv': sys.argv[1:], 'env': env}))"
            )
            env = {f"T_{i}": value for i, value in enumerate(values)}
            workdir = root / "work"
            workdir.mkdir()
            reply = host.launch("prop-run", [*python_job(dump), *args], env=env,
                                workdir=str(workdir))
            assert reply["ok"], reply
            assert host.wait_kind("prop-run", "finished")["exit_code"] == 0
            seen = json.loads((host.run_dir("prop-run") / "seen.json").read_text())
            assert seen == {"argv": args, "env": env}
            assert not list(root.rglob("PWNED")) and not (host.home / "PWNED").exists()
        finally:
            host.cleanup()
