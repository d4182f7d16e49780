"""Run secrets: names in specs and job files, values in the keyring (app.core.secrets),
``labdeck secrets`` and ``submit --secret`` as real subprocesses, and runctl → wrapper
handing values to the job through a pipe (real processes, this machine as the host).

The keyring is a real backend class (tests/harness/file_keyring.py) keeping values in a
0600 file under the test's tmp dir; the end-to-end proof over real sshd, with every file
and process searched for the value, is tests/reliability/test_secrets.py.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from app.core import secrets
from app.core.jobfile import parse_job_text
from app.core.jobspec import JobFileError, JobSpec, host_job, validate
from ssh_backend.runs import LaunchRequest
from tests.harness.file_keyring import BACKEND, ENV_VAR, FileKeyring
from tests.harness.runhost import AGENT_DIR, RunHost, python_job

REPO = Path(__file__).resolve().parents[2]
VALUE = "tok-5f1c9a2e7b3d-$(touch PWNED)-'\"\n☃"
# Prints, for each S_* variable, its name and the hex of its bytes (os.environb: exact).
DUMP = ("import json,os\n"
        "seen={k.decode(): v.hex() for k, v in os.environb.items() if k.startswith(b'S_')}\n"
        "open(os.environ['LABDECK_RUN_DIR']+'/seen.json','w').write(json.dumps(seen))")


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "keyring" / "values.json"
    path.parent.mkdir(mode=0o700)
    monkeypatch.setenv(ENV_VAR, str(path))
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    yield path
    keyring.set_keyring(before)


class Cli:
    """``python -m app`` with a private LABDECK_HOME and the file keyring."""

    def __init__(self, root: Path) -> None:
        self.home = root / "labdeck"
        (root / "user").mkdir(parents=True)
        (root / "kr").mkdir(mode=0o700)
        self.keyring_file = root / "kr" / "values.json"
        self.env = {"LABDECK_HOME": str(self.home), "HOME": str(root / "user"),
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "PYTHON_KEYRING_BACKEND": BACKEND, ENV_VAR: str(self.keyring_file)}

    def __call__(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=self.env,
                              input=stdin, capture_output=True, timeout=60, check=False)


# -- specs and job files --------------------------------------------------------------
def test_spec_names_secrets_and_validates_them() -> None:
    spec = JobSpec(name="t", argv=("x",), env={"A": "1"}, secrets=("WANDB_API_KEY",))
    assert JobSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["secrets"] == ["WANDB_API_KEY"]
    assert validate(spec) == []
    bad = JobSpec(name="t", argv=("x",), env={"A": "1"},
                  secrets=("A", "1x", "CUDA_VISIBLE_DEVICES", "B", "B"))
    assert validate(bad) == [
        "secrets: A is in env; name it once, as a secret",
        'secrets: "1x" is not a valid variable name',
        "secrets: CUDA_VISIBLE_DEVICES is set by Labdeck for every run; leave it out",
        "secrets: B is listed twice; name it once, as a secret",
    ]
    with pytest.raises(JobFileError, match="secrets: must be a list of text"):
        JobSpec.from_dict({"name": "t", "secrets": {"A": "value"}})
    # What the host is told holds no secrets at all (they go with the launch request).
    assert "secrets" not in host_job(spec, "run-0001", [0], ["GPU-0"])


@pytest.mark.parametrize(("fmt", "text"), [
    ("yaml", "command: python3 train.py\nsecrets: [WANDB_API_KEY, HF_TOKEN]\n"),
    ("toml", 'command = "python3 train.py"\nsecrets = ["WANDB_API_KEY", "HF_TOKEN"]\n'),
])
def test_job_files_name_secrets(fmt: str, text: str, tmp_path: Path) -> None:
    (spec,) = parse_job_text(text, fmt=fmt, source="job", base_dir=tmp_path)
    assert spec.secrets == ("WANDB_API_KEY", "HF_TOKEN")
    (one,) = parse_job_text("command: x\nsecrets: HF_TOKEN\n", fmt="yaml", source="job",
                            base_dir=tmp_path)
    assert one.secrets == ("HF_TOKEN",)
    with pytest.raises(JobFileError) as err:
        parse_job_text("command: x\nsecrets: {HF_TOKEN: abc}\n", fmt="yaml", source="job",
                       base_dir=tmp_path)
    assert err.value.problems == ['job: secrets: must be text or a list of text, got a mapping']


def test_launch_request_repr_hides_values() -> None:
    req = LaunchRequest("run-0001", {"argv": ["x"]}, (0,), ("GPU-0",), secrets={"K": VALUE})
    assert VALUE not in repr(req) and "secrets" not in repr(req)


# -- the keyring ----------------------------------------------------------------------
def test_keyring_set_resolve_list_remove(file_keyring: Path) -> None:
    assert secrets.list_names() == []
    secrets.set_secret("HF_TOKEN", VALUE)
    secrets.set_secret("WANDB_API_KEY", "w1")
    secrets.set_secret("WANDB_API_KEY", "w2")  # replaced, listed once
    assert secrets.list_names() == ["HF_TOKEN", "WANDB_API_KEY"]
    assert secrets.resolve(["WANDB_API_KEY", "HF_TOKEN"]) == {
        "WANDB_API_KEY": "w2", "HF_TOKEN": VALUE}
    assert secrets.missing(["HF_TOKEN", "NOPE"]) == ["NOPE"]
    with pytest.raises(secrets.MissingSecrets) as err:
        secrets.resolve(["HF_TOKEN", "NOPE", "GONE"])
    assert err.value.names == ["NOPE", "GONE"]
    assert str(err.value) == ("secrets NOPE, GONE are not set on this computer: set them "
                              "with `labdeck secrets set NOPE; labdeck secrets set GONE`")
    assert secrets.delete_secret("HF_TOKEN") is True
    assert secrets.delete_secret("HF_TOKEN") is False
    assert secrets.list_names() == ["WANDB_API_KEY"]
    assert file_keyring.stat().st_mode & 0o777 == 0o600
    # A damaged list of names loses the list, never the values or the next write.
    keyring.set_password(secrets.SERVICE, secrets.INDEX_KEY, "{not json")
    assert secrets.list_names() == []
    assert secrets.resolve(["WANDB_API_KEY"]) == {"WANDB_API_KEY": "w2"}


@pytest.mark.parametrize(("name", "value", "says"), [
    ("1X", "tok-9e1d", "is not a valid variable name"),
    ("LABDECK_RUN_ID", "tok-9e1d", "is set by Labdeck for every run"),
    ("K", "", "the value is empty"),
    ("K", "tok-9e1d\0b", "NUL byte"),
    ("K", "x" * (secrets.MAX_VALUE_BYTES + 1), "longer than 64 KiB"),
])
def test_unusable_names_and_values_are_refused_without_quoting_the_value(
    file_keyring: Path, name: str, value: str, says: str
) -> None:
    with pytest.raises(secrets.SecretsError, match=says) as err:
        secrets.set_secret(name, value)
    assert "tok-9e1d" not in str(err.value) and "xxxx" not in str(err.value)
    assert not file_keyring.exists() or name not in json.loads(file_keyring.read_text())


def test_no_keyring_backend_says_what_to_install() -> None:
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        for call in (secrets.list_names, lambda: secrets.resolve(["K"])):
            with pytest.raises(secrets.SecretsUnavailable, match="gnome-keyring"):
                call()
        assert secrets.resolve([]) == {}  # a run without secrets never needs a keyring
    finally:
        keyring.set_keyring(before)


class _BrokenKeyring(FileKeyring):
    """A backend whose service is gone (as a D-Bus keyring after logout): it fails, and
    quotes what it was given."""

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError(f"bus closed while reading {username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError(f"bus closed while storing {password}")


def test_a_failing_backend_is_reported_without_the_value(file_keyring: Path) -> None:
    keyring.set_keyring(_BrokenKeyring())
    with pytest.raises(secrets.SecretsUnavailable) as err:
        secrets.set_secret("HF_TOKEN", VALUE)
    assert "storing HF_TOKEN: RuntimeError)" in str(err.value)
    assert VALUE not in str(err.value)
    with pytest.raises(secrets.SecretsUnavailable, match="reading HF_TOKEN: RuntimeError: bus"):
        secrets.resolve(["HF_TOKEN"])


# -- the CLI (real subprocesses) --------------------------------------------------------
def test_cli_set_ls_rm_and_the_value_never_on_a_command_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    done = cli("secrets", "set", "HF_TOKEN", stdin=VALUE.encode() + b"\n")
    assert done.returncode == 0, done.stderr
    stored = json.loads(cli.keyring_file.read_text())["labdeck"]
    assert stored["HF_TOKEN"] == VALUE  # one trailing newline dropped, the inner one kept
    refused = cli("secrets", "set", "HF_TOKEN", "my-plain-value")
    assert refused.returncode == 2
    assert b"never given on the command line" in refused.stderr
    assert b"my-plain-value" not in refused.stdout + refused.stderr
    listed = cli("secrets", "ls")
    assert listed.returncode == 0 and listed.stdout == b"HF_TOKEN\n"
    assert VALUE.encode() not in listed.stdout + listed.stderr
    assert cli("secrets", "set", "K", stdin=b"\xff\xfe").returncode == 2
    assert cli("secrets", "rm", "HF_TOKEN").returncode == 0
    gone = cli("secrets", "rm", "HF_TOKEN")
    assert gone.returncode == 1 and b"no secret named HF_TOKEN" in gone.stderr
    none = Cli(tmp_path / "other")
    none.env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    unusable = none("secrets", "ls")
    assert unusable.returncode == 2 and b"no usable keyring" in unusable.stderr
    assert b"Traceback" not in unusable.stderr


def test_cli_set_asks_on_a_terminal_without_echo(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "app", "secrets", "set", "TTY_TOKEN"],
                            cwd=REPO, env=cli.env, stdin=secondary, stdout=secondary,
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
    cli = Cli(tmp_path)
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    assert cli("hosts", "add", "gpu1", "--ssh", "root@127.0.0.1").returncode == 0
    refused = cli("submit", str(script), "--secret", "HF_TOKEN")
    assert refused.returncode == 2
    assert b"secret HF_TOKEN is not set" in refused.stderr
    assert b"labdeck secrets set HF_TOKEN" in refused.stderr
    assert b"nothing was queued" in refused.stderr
    assert cli("secrets", "set", "HF_TOKEN", stdin=VALUE.encode()).returncode == 0
    queued = cli("submit", str(script), "--secret", "HF_TOKEN")
    assert queued.returncode == 0, queued.stderr
    shown = json.loads(cli("show", queued.stdout.decode().strip(), "--json").stdout)
    assert shown["spec"]["secrets"] == ["HF_TOKEN"]
    for path in cli.home.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path


# -- runctl → wrapper (real processes) ---------------------------------------------------
@pytest.fixture
def host(tmp_path: Path) -> Iterator[RunHost]:
    made = RunHost(tmp_path)
    yield made
    made.cleanup()


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
