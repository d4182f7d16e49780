"""Run secrets through real processes: ``labdeck secrets`` and ``submit --secret`` as
subprocesses with a private LABDECK_HOME, and runctl → wrapper handing values to the job
through a pipe (this machine as the host).

The keyring is tests/harness/file_keyring.py (values in a 0600 file under the test's tmp
dir); what the core does with names and values is tests/unit/test_secrets_core.py.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.labcli import LabCli
from tests.harness.runhost import AGENT_DIR, RunHost, python_job

VALUE = "tok-5f1c9a2e7b3d-$(touch PWNED)-'\"\n☃"
# Prints, for each S_* variable, its name and the hex of its bytes (os.environb: exact).
DUMP = ("import json,os\n"
        "seen={k.decode(): v.hex() for k, v in os.environb.items() if k.startswith(b'S_')}\n"
        "open(os.environ['LABDECK_RUN_DIR']+'/seen.json','w').write(json.dumps(seen))")


def secrets_cli(root: Path) -> LabCli:
    """The CLI with its values in the file keyring ``root/kr/values.json``."""
    cli = LabCli(root)
    cli.use_file_keyring(root / "kr" / "values.json")
    return cli


# -- the CLI (real subprocesses) --------------------------------------------------------
def test_cli_set_ls_rm_and_the_value_never_on_a_command_line(tmp_path: Path) -> None:
    cli = secrets_cli(tmp_path)
    done = cli.raw("secrets", "set", "HF_TOKEN", input=VALUE.encode() + b"\n")
    assert done.returncode == 0, done.stderr
    stored = json.loads(cli.keyring_file.read_text())["labdeck"]
    assert stored["HF_TOKEN"] == VALUE  # one trailing newline dropped, the inner one kept
    refused = cli.raw("secrets", "set", "HF_TOKEN", "my-plain-value")
    assert refused.returncode == 2
    assert b"never given on the command line" in refused.stderr
    assert b"my-plain-value" not in refused.stdout + refused.stderr
    listed = cli.raw("secrets", "ls")
    assert listed.returncode == 0 and listed.stdout == b"HF_TOKEN\n"
    assert VALUE.encode() not in listed.stdout + listed.stderr
    assert cli.raw("secrets", "set", "K", input=b"\xff\xfe").returncode == 2
    assert cli.raw("secrets", "rm", "HF_TOKEN").returncode == 0
    gone = cli.raw("secrets", "rm", "HF_TOKEN")
    assert gone.returncode == 1 and b"no secret named HF_TOKEN" in gone.stderr
    none = secrets_cli(tmp_path / "other")
    none.env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    unusable = none.raw("secrets", "ls")
    assert unusable.returncode == 2 and b"no usable keyring" in unusable.stderr
    assert b"Traceback" not in unusable.stderr


def test_cli_set_asks_on_a_terminal_without_echo(tmp_path: Path) -> None:
    cli = secrets_cli(tmp_path)
    primary, secondary = pty.openpty()
    proc = cli.popen("secrets", "set", "TTY_TOKEN", stdin=secondary, stdout=secondary,
                     stderr=secondary, start_new_session=True)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 30
    while b"(not shown)" not in seen and time.monotonic() < deadline:
        seen += os.read(primary, 1024)
    os.write(primary, b"typed-value-42\n")
    assert proc.wait(30) == 0
    try:
        while chunk := os.read(primary, 1024):
            seen += chunk
    except OSError:  # EIO once the other side is closed
        pass
    os.close(primary)
    assert b"typed-value-42" not in seen  # not echoed
    assert json.loads(cli.keyring_file.read_text())["labdeck"]["TTY_TOKEN"] == "typed-value-42"


def test_submit_refuses_a_secret_that_is_not_set(tmp_path: Path) -> None:
    cli = secrets_cli(tmp_path)
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    assert cli.raw("hosts", "add", "gpu1", "--ssh", "root@127.0.0.1").returncode == 0
    refused = cli.raw("submit", str(script), "--secret", "HF_TOKEN")
    assert refused.returncode == 2
    assert b"secret HF_TOKEN is not set" in refused.stderr
    assert b"labdeck secrets set HF_TOKEN" in refused.stderr
    assert b"nothing was queued" in refused.stderr
    assert cli.raw("secrets", "set", "HF_TOKEN", input=VALUE.encode()).returncode == 0
    queued = cli.raw("submit", str(script), "--secret", "HF_TOKEN")
    assert queued.returncode == 0, queued.stderr
    shown = json.loads(cli.raw("show", queued.stdout.decode().strip(), "--json").stdout)
    assert shown["spec"]["secrets"] == ["HF_TOKEN"]
    for path in cli.home.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path


# -- runctl → wrapper (real processes) ---------------------------------------------------
def launch(host: RunHost, run_id: str, values: object) -> dict[str, object]:
    return host.ctl({"op": "launch", "run_id": run_id, "gpu_indices": [0],
                     "gpu_uuids": ["GPU-test-0"], "secrets": values,
                     "job": {"argv": python_job(DUMP), "env": {"S_PLAIN": "p"}}})


def test_runctl_hands_secrets_to_the_job_through_a_pipe_only(host: RunHost) -> None:
    values = {"S_TOKEN": VALUE, "S_EMPTY": ""}
    reply = launch(host, "with-secrets", values)
    assert reply["ok"], reply
    assert host.wait_kind("with-secrets", "finished")["exit_code"] == 0
    folder = host.run_dir("with-secrets")
    seen = json.loads((folder / "seen.json").read_text())
    assert seen == {"S_PLAIN": b"p".hex(), "S_TOKEN": VALUE.encode().hex(), "S_EMPTY": ""}
    token = VALUE.split("-$")[0].encode()
    for path in [*folder.rglob("*"), *host.root.rglob("*")]:
        if path.is_file() and path.name != "seen.json":
            assert token not in path.read_bytes(), path
    assert "S_TOKEN" not in json.loads((folder / "job.json").read_text())["env"]


@pytest.mark.parametrize(("values", "error"), [
    ({"1BAD": "v"}, "secrets: '1BAD' is not a variable name"),
    ({"S_X": "hidden-value\0rest"}, "secrets[S_X] must be a string without NUL"),
    ({"S_X": 42}, "secrets[S_X] must be a string without NUL"),
    (["S_X"], "secrets must be an object"),
])
def test_malformed_secrets_are_refused_without_quoting_them(
    host: RunHost, values: object, error: str
) -> None:
    reply = launch(host, "bad-secrets", values)
    assert reply == {"ok": False, "error": error}
    assert not (host.run_dir("bad-secrets") / "job.json").exists()


def test_wrapper_with_unreadable_secrets_does_not_start_the_job(host: RunHost) -> None:
    folder = host.run_dir("no-secrets")
    folder.mkdir(parents=True, mode=0o700)
    (folder / "job.json").write_text(json.dumps({
        "run_id": "no-secrets", "argv": python_job(DUMP), "gpu_uuids": ["GPU-test-0"]}))
    done = subprocess.run([sys.executable, "-B", str(AGENT_DIR / "wrapper.py"), str(folder)],
                          input=b"not-json hidden-value", capture_output=True,
                          env=host.env(), timeout=30, check=False)
    assert done.returncode == 0
    assert (folder / "exit_code").read_text() == "127\n"
    assert not (folder / "seen.json").exists()
    assert b"unreadable secrets on stdin (JSONDecodeError)" in done.stderr
    assert b"hidden-value" not in done.stderr
