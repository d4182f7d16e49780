"""The labdeck client module a job imports: what it writes, that it never blocks, and
that outside Labdeck it writes nothing. Run in child processes, as a job would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

AGENT_DIR = Path(__file__).resolve().parents[2] / "ssh_backend" / "agent"
sys.path.insert(0, str(AGENT_DIR))
import labdeck  # noqa: E402
import tails  # noqa: E402
import wrapper  # noqa: E402


def lines(folder: Path) -> list[dict[str, object]]:
    text = (folder / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_log_flatten_params_and_finish(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with labdeck.init(config={"lr": 0.1, "model": {"depth": 4}, "path": tmp_path},
                      run_dir=str(tmp_path)) as run:
        run.log({"loss": 0.5, "val": {"acc": np.float32(0.25)}, "bad": "x"}, step=10)
        run.log({"loss": float("nan")})
        run.log_metric("lr", 1e-3, step=20)
        run.log_params({"seed": 7})
    records = lines(tmp_path)
    assert records[0]["params"] == {"lr": 0.1, "model/depth": 4, "path": str(tmp_path)}
    assert records[1]["step"] == 10 and records[1]["m"] == {"loss": 0.5, "val/acc": 0.25}
    assert records[2]["step"] == 11 and records[2]["m"]["loss"] != records[2]["m"]["loss"]
    assert records[3] == {"t": records[3]["t"], "step": 20, "m": {"lr": 1e-3}}
    assert records[4]["params"] == {"seed": 7}
    assert json.loads((tmp_path / "params.json").read_text()) == {
        "lr": 0.1, "model/depth": 4, "path": str(tmp_path), "seed": 7}
    assert oct((tmp_path / "metrics.jsonl").stat().st_mode & 0o777) == "0o600"
    # What the agent makes of it: every value, in order.
    data = (tmp_path / "metrics.jsonl").read_bytes()
    used, points, params, warnings = tails.parse_metrics(data, 0, "metrics.jsonl", 0.0)
    assert used == len(data) and warnings == [] and params["seed"] == 7
    assert [(p[0], p[1]) for p in points] == [("loss", 10), ("val/acc", 10), ("loss", 11),
                                              ("lr", 20)]
    run.log({"late": 1.0})  # after finish: ignored, no error
    assert len(lines(tmp_path)) == 5


def test_full_buffer_drops_instead_of_blocking(tmp_path: Path) -> None:
    run = labdeck.init(run_dir=str(tmp_path), flush_interval=60, max_buffer=100)
    started = time.monotonic()
    for i in range(10_000):
        run.log({"x": i}, step=i)
    assert time.monotonic() - started < 2.0
    run.finish()
    steps = [r["step"] for r in lines(tmp_path)]
    assert steps == sorted(steps) and 50 <= len(steps) <= 10_000 and steps[0] == 0


JOB = """
import labdeck, time
run = labdeck.init(config={"a": 1})
for i in range(5):
    run.log({"loss": 1.0 / (i + 1)}, step=i)
print("done", flush=True)
"""


def test_under_the_wrapper_env_a_job_records_into_its_run_dir(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    wrapper.install_client(str(folder))
    env = wrapper.job_env({"run_id": "run-0001", "env": {"PYTHONPATH": "/nowhere"}},
                          str(folder))
    assert env["PYTHONPATH"].split(os.pathsep) == ["/nowhere", str(folder / ".client")]
    assert sorted(os.listdir(folder / ".client")) == ["labdeck.py"]
    done = subprocess.run([sys.executable, "-c", JOB], env=env, cwd=tmp_path,
                          capture_output=True, timeout=30, check=True)
    assert done.stdout == b"done\n" and done.stderr == b""
    records = lines(folder)
    assert records[0]["params"] == {"a": 1} and [r["step"] for r in records[1:]] == list(range(5))


def test_outside_labdeck_it_writes_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABDECK_")}
    env["PYTHONPATH"] = str(AGENT_DIR)
    done = subprocess.run([sys.executable, "-c", JOB], env=env, cwd=tmp_path,
                          capture_output=True, timeout=30, check=True)
    assert done.stdout == b"done\n"
    assert os.listdir(tmp_path) == []
