"""Job specs: round trips, job.json, shell quoting (run through a real bash in
tests/integration/test_job_in_bash.py), validation, snapshots and specs from a script."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.jobs.feasibility import HostFacts
from app.core.jobs.jobspec import (
    JobFileError,
    JobSpec,
    SnapshotError,
    host_job,
    host_workdir,
    setup_lines,
    snapshot_files,
    spec_from_script,
    validate,
)
from app.core.jobs.snapshot import MAX_SNAPSHOT_BYTES
from tests.harness.shell_text import ENV_NAME, TEXT

PARAM_VALUE = st.one_of(TEXT, st.integers(-(2**53), 2**53), st.booleans(), st.none(),
                        st.floats(allow_nan=False, allow_infinity=False))
SPECS = st.builds(
    JobSpec,
    name=TEXT,
    argv=st.lists(TEXT, max_size=6).map(tuple),
    shell=st.none() | TEXT,
    workdir=st.none() | TEXT,
    upload=st.none() | TEXT,
    env=st.dictionaries(ENV_NAME, TEXT, max_size=4),
    setup=st.lists(TEXT, max_size=3).map(tuple),
    conda_env=st.none() | TEXT,
    venv=st.none() | TEXT,
    gpus=st.integers(0, 8),
    min_free_mem_mib=st.none() | st.floats(0, 1e6),
    hosts=st.lists(TEXT, max_size=2).map(tuple),
    pin_gpus=st.lists(st.integers(0, 7), max_size=2).map(tuple),
    priority=st.integers(-100, 100),
    params=st.dictionaries(st.from_regex(r"[a-z][a-z_-]{0,6}", fullmatch=True), PARAM_VALUE,
                           max_size=4),
    time_limit_s=st.none() | st.floats(1, 1e7),
    retry_on_lost=st.booleans(),
    max_retries=st.integers(0, 10),
)


@settings(max_examples=120, deadline=None)
@given(SPECS)
def test_spec_survives_json_round_trip_byte_for_byte(spec: JobSpec) -> None:
    stored = json.loads(json.dumps(spec.to_dict()))
    assert JobSpec.from_dict(stored) == spec
    job = json.loads(json.dumps(host_job(spec, "r0abc-1234", [1, 3], ["GPU-a", "GPU-b"], "h1")))
    assert job["argv"] == list(spec.argv) and job["shell"] == spec.shell
    assert job["env"] == spec.env
    assert job["setup"][len(job["setup"]) - len(spec.setup):] == list(spec.setup)
    assert set(job) == {"run_id", "argv", "shell", "env", "setup", "workdir", "time_limit_s",
                        "gpu_indices", "gpu_uuids", "sim_host"}
    assert (job["gpu_indices"], job["gpu_uuids"], job["sim_host"]) == (
        [1, 3], ["GPU-a", "GPU-b"], "h1")


def test_from_dict_ignores_unknown_keys_and_reports_wrong_types() -> None:
    assert JobSpec.from_dict({"name": "a", "future_field": 1}) == JobSpec(name="a")
    with pytest.raises(JobFileError) as info:
        JobSpec.from_dict({"argv": "python x.py", "gpus": "2", "env": {"A": 1},
                           "retry_on_lost": 1, "pin_gpus": [True]})
    assert info.value.problems == [
        'argv: must be a list of text, got "python x.py"',
        "env: must be a mapping of text to text, got a mapping",
        'gpus: must be a whole number, got "2"',
        "pin_gpus: must be a list of whole numbers, got a list",
        "retry_on_lost: must be true or false, got 1",
        "name: missing",
    ]
    with pytest.raises(JobFileError, match="spec: must be a mapping"):
        JobSpec.from_dict(["name"])


def test_setup_lines_order_and_quoting() -> None:
    spec = JobSpec(name="t", argv=("x",), conda_env="my env", venv="~/v e/",
                   setup=("module load cuda",))
    assert setup_lines(spec) == [
        'source "$(conda info --base)/etc/profile.d/conda.sh" && conda activate \'my env\'',
        "source \"$HOME\"/'v e'/bin/activate",
        "module load cuda",
    ]
    assert setup_lines(JobSpec(name="t", venv="/")) == ["source //bin/activate"]


@pytest.mark.parametrize(("workdir", "expected"), [
    (None, None), ("/data/x", "/data/x"), ("~/proj", "~/proj"), ("~", "~/"), ("proj", "~/proj"),
])
def test_host_workdir(workdir: str | None, expected: str | None) -> None:
    assert host_workdir(workdir) == expected


def test_host_job_refuses_bad_run_ids_and_mismatched_gpus() -> None:
    spec = JobSpec(name="t", argv=("x",))
    with pytest.raises(ValueError, match="run id"):
        host_job(spec, "../etc", [0], ["u"])
    with pytest.raises(ValueError, match="same length"):
        host_job(spec, "r0abc-1234", [0, 1], ["u"])
    job = host_job(spec, "r0abc-1234", [], [])
    assert job["gpu_indices"] == [] and job["workdir"] is None and job["time_limit_s"] is None


EIGHT_EACH = {"gpu1": HostFacts(8), "gpu2": HostFacts(8)}


def test_a_good_spec_has_no_problems(tmp_path: Path) -> None:
    spec = JobSpec(name="ok", argv=("python3", "t.py"), upload=str(tmp_path), gpus=2,
                   hosts=("gpu1",), pin_gpus=(0, 3), env={"A_1": "x"}, time_limit_s=60.0,
                   min_free_mem_mib=0.0, params={"lr": 0.1, "amp": True})
    assert validate(spec, known_hosts={"gpu1", "gpu2"}, facts=EIGHT_EACH) == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": ""}, "name: must not be empty"),
        ({"name": "a\nb"}, 'name: must be one line without control characters, got "a\\nb"'),
        ({"name": "x" * 201}, "name: must be at most 200 characters, got 201"),
        ({"argv": ()}, "command: nothing to run; give command:, shell: or script:"),
        ({"shell": "echo hi"}, "command: give a command or a shell line, not both"),
        ({"argv": ("a", "b\0c")}, "command: argument 1 contains a NUL byte, which no argument "
                                  "can hold"),
        ({"argv": ("",)}, "command: the program name is empty"),
        ({"workdir": "~bob/x"}, 'workdir: only "~/" is understood, not "~bob/x"'),
        ({"upload": "/nonexistent/labdeck"}, "upload: /nonexistent/labdeck does not exist"),
        ({"env": {"1A": "x"}}, 'env: "1A" is not a valid variable name (letters, digits, _; '
                               "not starting with a digit)"),
        ({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, "env: CUDA_VISIBLE_DEVICES is set by Labdeck "
                                                 "for every run; leave it out"),
        ({"env": {"A": "x\0"}}, "env: A: the value contains a NUL byte"),
        ({"conda_env": "c", "venv": "v"}, "venv: give conda_env or venv, not both"),
        ({"conda_env": " "}, "conda_env: must not be empty"),
        ({"gpus": -1}, "gpus: must be a whole number from 0 to 1024, got -1"),
        ({"gpus": 9}, "gpus: impossible: this run needs 9 GPUs on one host; the largest "
                      "host (gpu2) has 8"),
        ({"gpus": 2, "host_tags": ("a100",)}, "gpus: impossible: this run wants the host "
                                              "tags a100, which no host has"),
        ({"min_free_mem_mib": -5.0}, "min_free_mem_mib: must be a number ≥ 0, got -5.0"),
        ({"hosts": ("gpu-1",)}, 'hosts: unknown host "gpu-1" (did you mean "gpu1"?); known '
                               "hosts: gpu1, gpu2"),
        ({"hosts": ("-oProxyCommand",)}, "hosts: host name '-oProxyCommand' is not valid"),
        ({"pin_gpus": (0,)}, "pin_gpus: pinning GPUs needs exactly one host in hosts"),
        ({"hosts": ("gpu1",), "pin_gpus": (1, 1), "gpus": 2},
         "pin_gpus: must be distinct GPU indices ≥ 0"),
        ({"hosts": ("gpu1",), "pin_gpus": (1, 2)}, "pin_gpus: names 2 GPUs but gpus is 1"),
        ({"tags": ("",)}, "tags: must not be empty"),
        ({"priority": 10**7}, "priority: must be from -1,000,000 to 1,000,000"),
        ({"params": {"9lr": 1}}, 'params: "9lr" is not a valid parameter name'),
        ({"params": {"lr": float("nan")}}, "params: lr: must be text, a number or true/false, "
                                           "got NaN"),
        ({"params": {"lr": [1]}}, "params: lr: must be text, a number or true/false, got a list"),
        ({"time_limit_s": 0.0}, "time_limit: must be more than 0 seconds, got 0.0"),
        ({"max_retries": 101}, "max_retries: must be from 0 to 100, got 101"),
    ],
)
def test_each_problem_has_its_sentence(changes: dict[str, Any], problem: str) -> None:
    spec = JobSpec(**{"name": "t", "argv": ("python3", "t.py"), **changes})
    problems = validate(spec, known_hosts=["gpu1", "gpu2"], facts=EIGHT_EACH)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_validate_without_host_facts_skips_those_checks() -> None:
    spec = JobSpec(name="t", argv=("x",), gpus=64, hosts=("anything",))
    assert validate(spec) == []


def _tree(root: Path) -> None:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / "train.py").write_bytes(b"print('hi')\n")
    (root / "pkg" / "mod.py").write_bytes(b"x = 1\n")
    (root / "pkg" / "mod.pyc").write_bytes(b"\0")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git" / "HEAD").write_bytes(b"ref")
    (root / ".venv" / "lib" / "big").write_bytes(b"v")
    (root / "name with space $(x).txt").write_bytes(b"\xff\x00raw")


def test_snapshot_of_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _tree(root)
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not for upload")
    (root / "leak").symlink_to(outside)
    (root / "alias.py").symlink_to(root / "train.py")
    (root / "dangling").symlink_to(tmp_path / "missing")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "fifo")  # reading it would block forever
    files = snapshot_files(JobSpec(name="t", argv=("x",), upload=str(root)))
    assert files == {
        "alias.py": b"print('hi')\n",
        "name with space $(x).txt": b"\xff\x00raw",
        "pkg/mod.py": b"x = 1\n",
        "train.py": b"print('hi')\n",
    }


def test_snapshot_of_one_file_and_of_nothing(tmp_path: Path) -> None:
    script = tmp_path / "t.sh"
    script.write_bytes(b"echo hi\n")
    assert snapshot_files(JobSpec(name="t", argv=("x",), upload=str(script))) == {
        "t.sh": b"echo hi\n"}
    assert snapshot_files(JobSpec(name="t", argv=("x",))) == {}
    with pytest.raises(SnapshotError, match="does not exist"):
        snapshot_files(JobSpec(name="t", argv=("x",), upload=str(tmp_path / "gone")))


def test_snapshot_over_the_limit_names_the_size(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_bytes(b"x")
    with (root / "data.bin").open("wb") as f:  # sparse: large on paper, cheap on disk
        f.truncate(MAX_SNAPSHOT_BYTES + 20 * 2**20)
    with pytest.raises(SnapshotError) as info:
        snapshot_files(JobSpec(name="t", argv=("x",), upload=str(root)))
    assert str(info.value).startswith(
        f"upload: {root} holds 70.0 MiB to upload, more than the 50 MiB limit")


def test_spec_from_python_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import argparse\np = argparse.ArgumentParser()\n"
                      "p.add_argument('--verbose', action='store_true')\n")
    spec = spec_from_script(script, ["--verbose", "data.csv", "--lr", "3e-4"], gpus=2,
                            hosts=("gpu1",))
    assert spec == JobSpec(
        name="train", argv=("python3", "train.py", "--verbose", "data.csv", "--lr", "3e-4"),
        upload=str(script), gpus=2, hosts=("gpu1",), params={"verbose": True, "lr": 3e-4})
    assert spec.workdir is None
    assert snapshot_files(spec) == {"train.py": script.read_bytes()}
    whole = spec_from_script(script, [], upload_dir=True, params={"seed": 1}, name="n")
    assert whole.upload == str(tmp_path) and whole.name == "n"
    assert whole.argv == ("python3", "train.py", "--seed", "1") and whole.params == {"seed": 1}


def test_spec_from_shell_script_and_refusals(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("echo $1\n")
    assert spec_from_script(script, ["a b"]).argv == ("bash", "run.sh", "a b")
    with pytest.raises(JobFileError, match="no such script"):
        spec_from_script(tmp_path / "missing.py")
    other = tmp_path / "run.rb"
    other.write_text("")
    with pytest.raises(JobFileError, match=r"cannot tell how to run a \.rb file"):
        spec_from_script(other)
    with pytest.raises(JobFileError) as info:
        spec_from_script(script, ["--lr", "1"], gpus=-2, params={"lr": 2})
    assert info.value.problems == [
        "params: lr (args say 1) is also in the arguments with another value",
        "gpus: must be a whole number from 0 to 1024, got -2"]
    assert str(info.value) == "\n".join(info.value.problems)
