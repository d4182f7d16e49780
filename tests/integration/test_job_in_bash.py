"""A job.json run the way the wrapper's contract says, in a real bash: setup lines (venv,
conda, the user's own), then ``exec "$@"``; every argument and variable arrives byte for
byte and no shell text in them ever runs. The job specs themselves are
tests/unit/test_jobspec.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.jobs.jobspec import JobSpec, host_job
from tests.harness.shell_text import ENV_NAME, TEXT

PRINTER = """import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
                  if k.startswith(("X_", "FAKE_"))}, "cwd": os.getcwd()}))
"""


ACTIVATE = 'export FAKE_VENV="${BASH_SOURCE[0]}"\n'


CONDA = '#!/bin/sh\n[ "$1 $2" = "info --base" ] && printf "%s\\n" "$BASE_FOR_CONDA"\n'


CONDA_SH = 'conda() { [ "$1" = activate ] && export FAKE_CONDA_ENV="$2"; }\n'


def _run_like_the_wrapper(job: dict[str, Any], home: Path, cwd: Path) -> dict[str, Any]:
    """Start job.json the way the wrapper's contract says: setup lines, then exec "$@"."""
    script = "\n".join([*job["setup"], 'exec "$@"'])
    env = {"PATH": f"{home / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8",
           "BASE_FOR_CONDA": str(home / "conda base $(x)"), **job["env"]}
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c", script, "labdeck-job",
                          *job["argv"]], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=10, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def fake_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    (home / "bin").mkdir()
    (home / "bin" / "conda").write_text(CONDA)
    (home / "bin" / "conda").chmod(0o755)
    profile = home / "conda base $(x)" / "etc" / "profile.d"
    profile.mkdir(parents=True)
    (profile / "conda.sh").write_text(CONDA_SH)
    (home / "printer.py").write_text(PRINTER)
    return home


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    args=st.lists(TEXT, max_size=5),
    env=st.dictionaries(ENV_NAME, TEXT, max_size=3),
    venv_name=TEXT.filter(lambda s: s not in ("", ".", "..") and "/" not in s),
    conda_env=TEXT,
    under_home=st.booleans(),
)
def test_values_reach_the_job_byte_for_byte_and_never_run(
    fake_home: Path, args: list[str], env: dict[str, str], venv_name: str, conda_env: str,
    under_home: bool,
) -> None:
    venv = fake_home / "venvs" / venv_name
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "activate").write_text(ACTIVATE)
    work = fake_home / "work"
    work.mkdir(exist_ok=True)
    venv_text = f"~/venvs/{venv_name}/" if under_home else str(venv)
    for spec in (
        JobSpec(name="t", argv=(sys.executable, str(fake_home / "printer.py"), *args), env=env,
                venv=venv_text),
        JobSpec(name="t", argv=(sys.executable, str(fake_home / "printer.py"), *args), env=env,
                conda_env=conda_env, setup=("export X_SETUP=done",)),
    ):
        got = _run_like_the_wrapper(host_job(spec, "r0abc-1234", [0], ["u"]), fake_home, work)
        assert got["argv"] == args
        expected_env = dict(env)
        if spec.venv is not None:
            expected_env["FAKE_VENV"] = str(venv / "bin" / "activate")
        else:
            expected_env |= {"FAKE_CONDA_ENV": conda_env, "X_SETUP": "done"}
        assert got["env"] == expected_env
    assert list(work.iterdir()) == []  # no "touch canary" ever ran
