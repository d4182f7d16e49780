"""Event files found where a job's library writes them, in the job's working folder:
SummaryWriter()'s runs/<date>_<host>/, Lightning's lightning_logs/version_N/, Keras'
logs/train and logs/validation, CatBoost's learn/events.out.tfevents (no suffix); named as
TensorBoard shows them, and never from a folder that is no log's."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.runhost import AGENT_DIR
from tests.harness.tb_events import write_events

sys.path.insert(0, str(AGENT_DIR))
import eventfiles
import tails

RUN = "tail-run-1"


class Collector:
    """Every chunk the tails send, as a dict."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []

    def __call__(self, run_id: str, source: str, inode: int, start: int, end: int,
                 **fields: Any) -> None:
        self.chunks.append(dict(fields, run_id=run_id, source=source, start=start, end=end))


def drain(t: tails.Tails, budget: int = 1 << 30) -> None:
    for _ in range(10_000):
        if not t.poll(budget, now=1e9):
            return
    raise AssertionError("tailing never settled")


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".labdeck" / "runs" / RUN
    (folder / "code").mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"argv": ["python3", "train.py"]}))
    return folder


def test_event_files_anywhere_in_the_runs_own_working_folder(run_dir: Path) -> None:
    code = run_dir / "code"
    _, torch_default = write_events(code / "runs" / "Dec07_10-00-00_gpu1", 5, "simple")
    _, lightning = write_events(code / "lightning_logs" / "version_0", 4, "tensor", ("acc",))
    _, keras_train = write_events(code / "logs" / "train", 3, "tensor", ("epoch_loss",))
    _, keras_val = write_events(code / "logs" / "validation", 3, "tensor", ("epoch_loss",))
    catboost, learn = write_events(code / "learn", 2, "simple", ("RMSE",))
    catboost.rename(catboost.with_name("events.out.tfevents"))
    for ignored in (code / ".venv" / "lib", code / "node_modules" / "x"):
        write_events(ignored, 2, "simple", ("nope",))
    out = Collector()
    t = tails.Tails(out)
    t.watch(RUN, {})
    drain(t)
    sources = sorted({c["source"] for c in out.chunks if c["source"].startswith("wd/")})
    assert sources[0] == "wd/learn/events.out.tfevents" and len(sources) == 5
    series = {p[0] for c in out.chunks for p in c.get("points", [])}
    assert series == {"loss", "acc", "train/epoch_loss", "validation/epoch_loss",
                      "learn/RMSE"}
    count = sum(len(c.get("points", [])) for c in out.chunks)
    assert count == sum(map(len, (torch_default, lightning, keras_train, keras_val, learn)))
    # A file that appears while the run goes on is picked up too.
    _, later = write_events(code / "runs" / "Dec07_11-00-00_gpu1", 2, "simple", ("late",))
    t.poll(1 << 30, now=2e9)  # the next look at the working folder
    drain(t)
    assert sum(len(c.get("points", [])) for c in out.chunks) == count + len(later)


def test_sources_in_the_working_folder_stay_inside_it() -> None:
    assert tails.valid_source("wd/runs/x/events.out.tfevents.1.host.42.0")
    assert tails.valid_source("wd/learn/events.out.tfevents")
    for bad in ("wd/../secret/events.out.tfevents.1", "wd//events.out.tfevents.1",
                "wd/runs/notes.txt", "wd/./events.out.tfevents.1"):
        assert not tails.valid_source(bad), bad
    assert eventfiles.writer_pid("events.out.tfevents.1733560000.gpu1.lab.4242.0") == 4242
    assert eventfiles.writer_pid("events.out.tfevents.1733560000.gpu1.4242.0.v2") == 4242
    assert eventfiles.series_prefix("logs/validation/events.out.tfevents.1") == "validation/"
    assert eventfiles.series_prefix("runs/Dec07_10-00-00_gpu1/events.out.tfevents.1") == ""
