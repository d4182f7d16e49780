"""An unchanged training script that writes TensorBoard events where its library's
defaults put them — ``runs/<date>_<host>/`` as ``SummaryWriter()`` does, and Keras'
``logs/train`` and ``logs/validation`` — gets its curves in Labdeck's store through the
whole real path: ``labdeck submit`` uploads it, ``labdeck serve`` runs it on a local host
with the real agent, the agent finds the files in the job's working folder and the
ingestor stores the points (what the run window draws). The script writes with a stdlib
TFRecord writer copied beside it (the host's plain python3 has no tensorboard)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.harness import tfrecord
from tests.harness.labcli import LabCli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TRAIN = """
import os, socket, time
import tfrecord

def writer(folder):
    os.makedirs(folder, exist_ok=True)
    name = "events.out.tfevents.%d.%s.%d.0" % (time.time(), socket.gethostname(), os.getpid())
    return open(os.path.join(folder, name), "ab")

runs = writer(time.strftime("runs/%b%d_%H-%M-%S_") + socket.gethostname())
train, validation = writer("logs/train"), writer("logs/validation")
for step in range(5):
    runs.write(tfrecord.record(tfrecord.scalar_event("loss", step, time.time(), 1.0 / (step + 1))))
    train.write(tfrecord.record(tfrecord.scalar_event("epoch_loss", step, time.time(), 0.5)))
    validation.write(tfrecord.record(tfrecord.scalar_event("epoch_loss", step, time.time(), 0.7)))
    for f in (runs, train, validation):
        f.flush()
    time.sleep(0.3)
time.sleep(3)  # the agent looks through the working folder every few seconds
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "lab"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def labdeck(*args: str) -> str:
    return LabCli.of_this_process(timeout=120).ok(*args)


def test_curves_from_event_files_wherever_the_script_writes_them(home: Path) -> None:
    labdeck("hosts", "add", "sim1", "--local", "--simulate-gpus", "1", "--interval", "0.2")
    project = home / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    shutil.copy(Path(tfrecord.__file__), project / "tfrecord.py")
    (project / "job.yaml").write_text("script: train.py\nupload: .\n")  # the whole folder
    (run_id,) = labdeck("submit", str(project / "job.yaml")).split()
    labdeck("serve", "--until-done", "--poll", "0.5")
    with Store.open() as store:
        run = RunStore(store).get(run_id)
        assert run is not None and run.state is RunState.SUCCEEDED, run
        metrics = MetricStore(store)
        deadline = time.monotonic() + 30
        while True:
            series = {s.name: s.count for s in metrics.series(run.host_run_id)}
            if len(series) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert series == {"loss": 5, "train/epoch_loss": 5, "validation/epoch_loss": 5}
