"""Job files: the forms they take, every kind of malformed file, and fuzzing the loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.jobs.feasibility import HostFacts
from app.core.jobs.jobfile import (
    KEYS,
    MAX_JOB_FILE_BYTES,
    is_job_file,
    load_job_file,
    parse_duration,
    parse_job_text,
    parse_memory_mib,
    specs_from_mapping,
)
from app.core.jobs.jobspec import JobFileError, JobSpec


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path, so messages name files the way a user typed them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _load(name: str, text: str, **kwargs: Any) -> list[JobSpec]:
    Path(name).write_text(text)
    return load_job_file(name, **kwargs)


def _problems(name: str, text: str | bytes, **kwargs: Any) -> list[str]:
    if isinstance(text, bytes):
        Path(name).write_bytes(text)
    else:
        Path(name).write_text(text)
    with pytest.raises(JobFileError) as info:
        load_job_file(name, **kwargs)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


FULL_YAML = """
name: resnet
script: src/train.py
args: [--epochs, "10", --lr, 3e-4]
upload: .
env: {WANDB_MODE: offline, SEED: 7}
conda_env: torch 2
setup: module load cuda/12
gpus: 2
min_free_mem_mib: 20GiB
hosts: gpu1
host_tags: [a100]
priority: 5
tags: [baseline]
params: {amp: true}
time_limit: 2h30m
retry_on_lost: false
max_retries: 0
"""


def test_full_yaml_file(here: Path) -> None:
    (here / "src").mkdir()
    (here / "src" / "train.py").write_text("print()\n")
    [spec] = _load("job.yaml", FULL_YAML, known_hosts={"gpu1"},
                   facts={"gpu1": HostFacts(4, frozenset({"a100"}))})
    assert spec == JobSpec(
        name="resnet",
        argv=("python3", "src/train.py", "--epochs", "10", "--lr", "3e-4", "--amp"),
        upload=str(here), env={"WANDB_MODE": "offline", "SEED": "7"},
        setup=("module load cuda/12",), conda_env="torch 2", gpus=2, min_free_mem_mib=20480.0,
        hosts=("gpu1",), host_tags=("a100",), priority=5, tags=("baseline",),
        params={"epochs": 10, "lr": 3e-4, "amp": True}, time_limit_s=9000.0,
        retry_on_lost=False, max_retries=0,
    )


def test_toml_file_and_defaults(here: Path) -> None:
    [spec] = _load("exp.toml", 'command = ["python3", "-u", "t.py", "--bs", 64]\n'
                   'workdir = "~/proj"\n[env]\nA = "1"\n')
    assert spec == JobSpec(name="exp", argv=("python3", "-u", "t.py", "--bs", "64"),
                           workdir="~/proj", env={"A": "1"}, params={"bs": 64})


def test_command_string_is_split_into_words_not_run_by_a_shell(here: Path) -> None:
    [spec] = _load("j.yaml", """command: 'python3 t.py --msg "a b; $(touch x)" `id` $HOME'""")
    assert spec.argv == ("python3", "t.py", "--msg", "a b; $(touch x)", "`id`", "$HOME")
    assert spec.shell is None and spec.params == {"msg": "a b; $(touch x)"}


def test_shell_line_is_kept_as_written(here: Path) -> None:
    [spec] = _load("j.yaml", "shell: |\n  cd data && python3 t.py --lr 0.1 | tee log\n")
    assert spec.shell == "cd data && python3 t.py --lr 0.1 | tee log\n"
    assert spec.argv == () and spec.params == {"lr": 0.1}
    assert _problems("k.yaml", "shell: echo 'open\nparams: {lr: 1}\n") == [
        "k.yaml: params: not allowed with shell: (a shell line is run as written); "
        "use command: or script: instead"]


def test_script_forms(here: Path) -> None:
    (here / "a" / "b").mkdir(parents=True)
    (here / "a" / "b" / "run.sh").write_text("echo\n")
    [spec] = _load("j.yaml", "script: a/b/run.sh\nargs: 'x \"y z\"'\nupload: a\n")
    assert spec.argv == ("bash", "b/run.sh", "x", "y z") and spec.upload == str(here / "a")
    [spec] = _load("j.yaml", "script: a/b/run.sh\n")
    assert spec.argv == ("bash", "run.sh") and spec.upload == str(here / "a/b/run.sh")
    [spec] = _load("j.yaml", "script: bin/on-host.rb\ninterpreter: ruby -w\nupload: false\n"
                   "workdir: /srv\n")
    assert spec.argv == ("ruby", "-w", "bin/on-host.rb") and spec.upload is None
    assert _problems("j.yaml", "script: a/b/run.sh\nupload: a/c\n") == [
        f"j.yaml: upload: {here}/a/c does not exist"]
    (here / "c").mkdir()
    assert _problems("j.yaml", "script: a/b/run.sh\nupload: c\n") == [
        "j.yaml: script: a/b/run.sh is not inside upload: c"]
    assert _problems("j.yaml", "script: a/b/run.rb\n") == [
        'j.yaml: script: cannot tell how to run "a/b/run.rb"; add interpreter: (for example '
        "interpreter: ruby)"]


def test_missing_script_names_the_field_and_folder(here: Path) -> None:
    assert _problems("job.yaml", "script: train.py\ngpus: 1\n") == [
        f"job.yaml: script: train.py not found (looked in {here})"]


def test_argparse_flags_in_the_script_are_understood(here: Path) -> None:
    Path("t.py").write_text("import argparse\nargparse.ArgumentParser().add_argument("
                            "'--verbose', action='store_true')\n")
    [spec] = _load("j.yaml", "script: t.py\nargs: [--verbose, data.csv]\n")
    assert spec.params == {"verbose": True}


def test_params_are_appended_unless_present(here: Path) -> None:
    [spec] = _load("j.yaml", "command: python3 t.py --lr 0.1\nparams: {lr: 0.1, bs: 64, "
                   "tag: -x, dry: false}\n")
    assert spec.argv == ("python3", "t.py", "--lr", "0.1", "--bs", "64", "--tag=-x")
    assert spec.params == {"lr": 0.1, "bs": 64, "tag": "-x", "dry": False}
    assert _problems("j.yaml", "command: python3 t.py --lr 0.1\nparams: {lr: 0.2}\n") == [
        "j.yaml: params: lr (args say 0.1) is also in the arguments with another value"]


def test_sweep_expands_with_names_and_replaces_existing_args(here: Path) -> None:
    specs = _load("j.yaml", "name: base\ncommand: python3 t.py --lr 1 --x=y\n"
                  "sweep: {lr: [1e-3, 3e-4], seed: [0, 1, 2]}\n")
    assert [s.name for s in specs] == [
        "base-lr=1e-3-seed=0", "base-lr=1e-3-seed=1", "base-lr=1e-3-seed=2",
        "base-lr=3e-4-seed=0", "base-lr=3e-4-seed=1", "base-lr=3e-4-seed=2"]
    assert specs[4].argv == ("python3", "t.py", "--lr", "3e-4", "--x=y", "--seed", "1")
    assert specs[4].params == {"x": "y", "lr": 3e-4, "seed": 1}


def test_huge_sweep_is_one_clear_error(here: Path) -> None:
    grid = {"a": list(range(100)), "b": list(range(100)), "c": [1, 2]}
    assert _problems("j.yaml", yaml.safe_dump({"command": "x", "sweep": grid})) == [
        "j.yaml: sweep: 20,000 combinations (a 100 × b 100 × c 2) is more than the limit of "
        "10,000; split the sweep into smaller files"]


def test_sweep_problems(here: Path) -> None:
    assert _problems("j.yaml", "command: x\nparams: {lr: 1}\nsweep: {lr: [1, 2], s: 3, "
                     "t: [], u: [[1]], v: [1, 1], 9w: [1]}\n") == [
        "j.yaml: sweep: lr is also in params; keep it in one place",
        "j.yaml: sweep: s: must be a non-empty list of values, got 3",
        "j.yaml: sweep: t: must be a non-empty list of values, got a list",
        "j.yaml: sweep: u: values must be text, numbers or true/false",
        "j.yaml: sweep: v: a value appears twice",
        'j.yaml: sweep: "9w" is not a valid parameter name (letters, digits, _ . -; starting '
        "with a letter)",
    ]


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("command: x\ngpus: two\n",
         ['job.yaml: gpus: must be a whole number ≥ 0, got "two"']),
        ("command: x\ngpus: 1.5\npriority: high\nretry_on_lost: yes please\n", [
            "job.yaml: gpus: must be a whole number ≥ 0, got 1.5",
            'job.yaml: priority: must be a whole number, got "high"',
            'job.yaml: retry_on_lost: must be true or false, got "yes please"']),
        ("comand: x\ngpu: 2\n", [
            'job.yaml: unknown key "comand" (did you mean "command"?)',
            'job.yaml: unknown key "gpu" (did you mean "gpus"?)',
            "job.yaml: command: nothing to run; give command:, shell: or script:"]),
        ("command: x\n1: a\nzzzz: b\n", [
            "job.yaml: key 1 is not text", 'job.yaml: unknown key "zzzz"']),
        ("command: x\nenv: {1A: x, B: true, C: [1], D: null}\n", [
            "job.yaml: env: B: must be text or a number, got true (quote it: \"true\")",
            "job.yaml: env: C: must be text or a number, got a list",
            "job.yaml: env: D: must be text or a number, got null",
            'job.yaml: env: "1A" is not a valid variable name (letters, digits, _; not '
            "starting with a digit)"]),
        ("command: x\nenv: [A]\nhosts: {a: 1}\npin_gpus: [-1]\nsetup: 3\n", [
            "job.yaml: env: must be a mapping of NAME: value, got a list",
            "job.yaml: hosts: must be text or a list of text, got a mapping",
            "job.yaml: pin_gpus: must be a GPU index or a list of them (whole numbers ≥ 0), "
            "got a list",
            "job.yaml: setup: must be text or a list of text, got 3"]),
        ("command: x\ntime_limit: soon\nmin_free_mem_mib: lots\n", [
            'job.yaml: time_limit: must be a duration like "2h30m", "90m" or a number of '
            'seconds, got "soon"',
            'job.yaml: min_free_mem_mib: must be a memory size like 8192 (MiB) or "8GiB", '
            'got "lots"']),
        ("command: 'python \"unclosed'\n", [
            "job.yaml: command: cannot split \"python \\\"unclosed\" into words: "
            "No closing quotation"]),
        ("command: x\nshell: y\nargs: [1]\n", [
            "job.yaml: shell: give one of command:, shell: or script:, not command and shell",
            "job.yaml: args: only goes with script: (put it in command: instead)"]),
        ("command: x\nupload: true\n", [
            "job.yaml: upload: must be a path (like .) or false, got true"]),
        ("command: x\nupload: nowhere\n", [
            "job.yaml: upload: {here}/nowhere does not exist"]),
        ("command: x\nparams: {lr: [1, 2], 2x: 1}\nsweep: []\n", [
            "job.yaml: params: lr: must be text, a number or true/false, got a list",
            'job.yaml: params: "2x" is not a valid parameter name (letters, digits, _ . -; '
            "starting with a letter)",
            "job.yaml: sweep: must be a mapping of parameter: [values…], got a list"]),
        ("command: x\nname: 2024-01-01\n", [
            "job.yaml: name: must be text, got date '2024-01-01'"]),
        ("command: x\ngpus: 3\nhosts: [gpu1, gpu7]\n", [
            "job.yaml: gpus: impossible: this run needs 3 GPUs on one host; the largest "
            "eligible host (gpu1) has 2",
            'job.yaml: hosts: unknown host "gpu7" (did you mean "gpu1"?); known hosts: gpu1']),
    ],
)
def test_malformed_fields(here: Path, text: str, problems: list[str]) -> None:
    problems = [p.replace("{here}", str(here)) for p in problems]
    assert _problems("job.yaml", text, known_hosts=["gpu1"],
                     facts={"gpu1": HostFacts(2)}) == problems


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("job.yaml", "command: x\ngpus: [1\n",
         "job.yaml: line 3, column 1: YAML syntax error: while parsing a flow sequence "
         "expected ',' or ']', but got '<stream end>'"),
        ("job.yaml", "a: b\n  c: d\n",
         "job.yaml: line 2, column 4: YAML syntax error: mapping values are not allowed here"),
        ("job.toml", 'command = "x"\ngpus = \n',
         "job.toml: TOML syntax error: Invalid value (at line 2, column 8)"),
        ("job.toml", "a = 1\na = 2\n", "job.toml: TOML syntax error: Cannot overwrite a value"),
        ("job.yaml", "", "job.yaml: the file is empty; it needs command:, shell: or script: "
                         "at least"),
        ("job.yaml", "# only a comment\n", "job.yaml: the file is empty"),
        ("job.toml", "", "job.toml: the file is empty"),
        ("job.yaml", "- command: x\n- command: y\n",
         "job.yaml: the top level must be a mapping of keys such as command: and gpus:, got a "
         "list"),
        ("job.yaml", "just text\n", 'job.yaml: the top level must be a mapping of keys such as '
                                    'command: and gpus:, got "just text"'),
        ("job.yaml", b"command: \xff\xfe\n", "job.yaml: not UTF-8 text (a bad byte at offset 9)"),
        ("job.yaml", "a: !!python/object/apply:os.system [touch pwned]\n",
         "job.yaml: line 1, column 4: YAML syntax error: could not determine a constructor"),
        ("job.yaml", "a: &x [1]\nb: *y\n", "job.yaml: line 2, column 4: YAML syntax error: "
                                           "found undefined alias 'y'"),
        ("job.yaml", "[" * 200_000, "job.yaml: nested too deeply to be a job file"),
        ("job.yaml", "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 600)),
         "job.yaml: nested too deeply to be a job file"),
        ("job.json", "{}", "job.json: job files end in .yaml, .yml or .toml"),
        ("missing.yaml", None, "missing.yaml: cannot read it: No such file or directory"),
        ("dir.yaml", None, "dir.yaml: cannot read it: Is a directory"),
        ("big.yaml", "#" * (MAX_JOB_FILE_BYTES + 1),
         "big.yaml: 1,048,577 bytes is too big for a job file (the limit is 1024 KiB)"),
    ],
)
def test_malformed_files(here: Path, name: str, text: str | bytes | None, problem: str) -> None:
    if name == "dir.yaml":
        Path(name).mkdir()
    if text is not None:
        Path(name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(JobFileError) as info:
        load_job_file(name)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(problem), (
        info.value.problems)
    assert not (here / "pwned").exists()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2h30m", 9000.0), ("90m", 5400.0), ("90 min", 5400.0), ("45s", 45.0), ("1d", 86400.0),
     ("1.5h", 5400.0), ("3600", 3600.0), (" 10 ", 10.0), (3600, 3600.0), (0.5, 0.5),
     ("0", None), (0, None), (-5, None), ("", None), ("2x", None), ("h", None), (True, None),
     (float("inf"), None), (10**400, None), ("1m30", None), (None, None)],
)
def test_parse_duration(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "mib"),
    [(8192, 8192.0), ("8192MiB", 8192.0), ("8GiB", 8192.0), ("8 GB", 8192.0), ("1.5g", 1536.0),
     ("512m", 512.0), (0, 0.0), ("512", 512.0), (-1, None), ("8TB", None), (False, None),
     (float("nan"), None)],
)
def test_parse_memory(value: Any, mib: float | None) -> None:
    assert parse_memory_mib(value) == mib


def test_is_job_file() -> None:
    assert is_job_file("a/job.YAML") and is_job_file("x.yml") and is_job_file("x.toml")
    assert not is_job_file("train.py") and not is_job_file("yaml")


NASTY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=20) | st.sampled_from(["$(touch x)", "`id`", "a; b", "l1\nl2", "'\""])


@settings(max_examples=150, deadline=None)
@given(args=st.lists(NASTY, max_size=5), env=st.dictionaries(
    st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True), NASTY, max_size=3),
    fmt=st.sampled_from(["yaml", "toml"]))
def test_values_in_job_files_arrive_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory, args: list[str], env: dict[str, str], fmt: str
) -> None:
    data = {"command": ["prog", *args], "env": env}
    if fmt == "yaml":
        # Escaped, since PyYAML writes a raw NEL (U+0085) that its reader takes as a break.
        text = yaml.safe_dump(data, allow_unicode=False)
    else:
        # JSON strings are TOML basic strings once DEL, which TOML wants escaped, is.
        def q(s: str) -> str:
            return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")
        text = "command = [" + ", ".join(q(a) for a in data["command"]) + "]\n[env]\n" + "".join(
            f"{k} = {q(v)}\n" for k, v in env.items())
    [spec] = parse_job_text(text.encode(), fmt=fmt, source="j", base_dir=Path("/"))
    assert spec.argv == ("prog", *args)
    assert spec.env == env


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300), st.sampled_from(["yaml", "toml"]))
def test_arbitrary_input_only_ever_raises_job_file_error(data: str | bytes, fmt: str) -> None:
    try:
        specs = parse_job_text(data, fmt=fmt, source="f", base_dir=Path("/nonexistent"))
    except JobFileError as e:
        assert e.problems and all(p.startswith("f: ") for p in e.problems)
    else:
        assert all(isinstance(s, JobSpec) for s in specs)


_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), _ANY, max_size=8))
def test_any_mapping_of_known_keys_only_ever_raises_job_file_error(data: dict[str, Any]) -> None:
    try:
        specs = specs_from_mapping(data, source="f", base_dir=Path("/nonexistent"))
    except JobFileError as e:
        assert e.problems
    else:
        assert specs and all(isinstance(s, JobSpec) for s in specs)
