"""Run secrets: names in specs and job files, values in the keyring (app.core.jobs.secrets).

The keyring is a real backend class (tests/harness/file_keyring.py) keeping values in a
0600 file under the test's tmp dir. ``labdeck secrets`` and runctl → wrapper as real
processes are tests/integration/test_secrets_run.py; the end-to-end proof over real sshd,
with every file and process searched for the value, is tests/reliability/test_secrets.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from app.core.jobs import secrets
from app.core.jobs.jobfile import parse_job_text
from app.core.jobs.jobspec import JobFileError, JobSpec, host_job, validate
from ssh_backend.runs import LaunchRequest
from tests.harness.file_keyring import ENV_VAR, FileKeyring

VALUE = "tok-5f1c9a2e7b3d-$(touch PWNED)-'\"\n☃"


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "keyring" / "values.json"
    path.parent.mkdir(mode=0o700)
    monkeypatch.setenv(ENV_VAR, str(path))
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    yield path
    keyring.set_keyring(before)


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
