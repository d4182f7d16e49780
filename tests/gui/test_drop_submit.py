"""Drops on the real main window queue runs in a real store (fake sessions only for GPUs)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from submit_fixtures import drag, drop_files, make_world

from app.core.queue.runs import RunState
from app.ui.submit.dialog import SubmitDialog
from app.ui.submit.drop_submit import DropSubmitter, install_drop_submit, pin_target

pytestmark = pytest.mark.gui


@pytest.fixture
def world(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    w = make_world(tmp_path)
    qtbot.addWidget(w.window)
    w.window.resize(1280, 800)
    w.window.show()
    w.monitor.start()
    yield w
    for dialog in w.window.findChildren(SubmitDialog):
        dialog.done(0)  # a failed test's dialog must not leave its worker behind
    w.window.bridge.detach()
    w.window.cluster_view.stop()
    w.monitor.stop()
    w.store.close()


@pytest.fixture
def submitter(world) -> DropSubmitter:
    return install_drop_submit(world.window, world.ctx)


def _dialog(qtbot, submitter: DropSubmitter) -> SubmitDialog:
    qtbot.waitUntil(lambda: submitter.last_dialog is not None, timeout=3000)
    dialog = submitter.last_dialog
    assert isinstance(dialog, SubmitDialog)
    qtbot.waitUntil(lambda: bool(dialog.items), timeout=5000)
    return dialog


def _press_enter(qtbot, dialog: SubmitDialog) -> None:
    with qtbot.waitSignal(dialog.queued, timeout=5000):
        qtbot.keyClick(dialog.name_edit, Qt.Key.Key_Return)


def test_dropped_script_opens_prefilled_and_enter_queues_it(qtbot, world, submitter) -> None:
    script = world.script()
    d = drag(world.window, [script])
    assert d.start()
    assert "Drop to queue 'train.py'" in world.window.statusBar().currentMessage()
    assert d.move() and d.drop()
    dialog = _dialog(qtbot, submitter)
    assert dialog.name_edit.text() == "train"
    assert dialog.command_edit.text() == "python3 train.py"
    rows = {r.name: r.text for r in dialog.params.rows()}
    assert rows == {"lr": "0.001", "epochs": "10", "batch-size": "64", "amp": "false",
                    "seed": ""}
    assert dialog.count_label.text() == "Queues 1 run"
    assert dialog.ok_button.isEnabled() and dialog.ok_button.isDefault()
    _press_enter(qtbot, dialog)
    runs = world.ctx.runstore.list_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.state is RunState.QUEUED and run.name == "train"
    assert run.spec["argv"] == ["python3", "train.py", "--lr", "0.001", "--epochs", "10",
                                "--batch-size", "64"]
    assert run.spec["upload"] == str(script.resolve())
    assert run.spec["gpus"] == 1 and run.spec["hosts"] == [] and run.spec["pin_gpus"] == []
    assert run.spec["params"] == {"lr": 0.001, "epochs": 10, "batch-size": 64, "amp": False}
    assert world.wakes == [1]
    assert world.window.statusBar().currentMessage() == f"Queued 1 run: {run.id}"


def test_drop_on_a_gpu_tile_pins_host_and_gpu(qtbot, world, submitter) -> None:
    world.online()
    qtbot.waitUntil(lambda: len(world.window.cluster_view.tiles()) == 8, timeout=3000)
    tile = world.window.cluster_view.groups["gpu-b"].tiles[2]
    # Tiles are laid out in slices after they are made (a big host stays responsive).
    qtbot.waitUntil(lambda: pin_target(world.window, tile.mapTo(
        world.window, tile.rect().center()))[0] is tile, timeout=3000)
    script = world.script()
    d = drag(tile, [script])
    assert d.start() and d.move()
    # The tile is outlined and the status bar names the place before anything is let go.
    assert submitter.highlight.isVisible()
    assert submitter.highlight.geometry().topLeft() == tile.mapTo(world.window, QPoint(0, 0))
    assert submitter.highlight.size() == tile.size()
    assert world.window.statusBar().currentMessage().endswith("on gpu-b, GPU 2")
    assert d.drop()
    assert not submitter.highlight.isVisible()
    dialog = _dialog(qtbot, submitter)
    assert dialog.settings.host_combo.currentData() == "gpu-b"
    assert dialog.settings.pin_edit.text() == "2"
    assert "Pinned to <b>gpu-b, GPU 2</b>" in dialog.source_label.text()
    _press_enter(qtbot, dialog)
    (run,) = world.ctx.runstore.list_runs()
    assert run.spec["hosts"] == ["gpu-b"] and run.spec["pin_gpus"] == [2]
    assert run.spec["gpus"] == 1


def test_drop_on_a_host_header_pins_the_host_only(qtbot, world, submitter) -> None:
    world.online()
    qtbot.waitUntil(lambda: len(world.window.cluster_view.tiles()) == 8, timeout=3000)
    group = world.window.cluster_view.groups["gpu-a"]
    at = group.name_label.mapTo(world.window, group.name_label.rect().center())
    target, host, gpus = pin_target(world.window, at)
    assert target is group and host == "gpu-a" and gpus == ()
    d = drop_files(group.name_label, [world.script()])
    dialog = _dialog(qtbot, submitter)
    assert d.mime.hasUrls()
    assert dialog.settings.host_combo.currentData() == "gpu-a"
    assert dialog.settings.pin_edit.text() == ""
    _press_enter(qtbot, dialog)
    (run,) = world.ctx.runstore.list_runs()
    assert run.spec["hosts"] == ["gpu-a"] and run.spec["pin_gpus"] == []


def test_a_png_is_refused_before_the_drop_with_a_reason(qtbot, world, submitter) -> None:
    photo = world.files / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    d = drag(world.window, [photo])
    assert not d.start()
    assert world.window.statusBar().currentMessage() == (
        "Labdeck queues .py and .sh scripts, folders and .yaml/.yml/.toml job files; "
        "'photo.png' is none of these")
    qtbot.wait(50)
    assert submitter.last_dialog is None
    assert world.ctx.runstore.list_runs() == []


def test_a_mixed_drop_takes_the_script_and_names_what_it_skips(qtbot, world,
                                                              submitter) -> None:
    photo = world.files / "photo.png"
    photo.write_bytes(b"png")
    d = drag(world.window, [world.script(), photo])
    assert d.start()
    assert "skipping 'photo.png'" in world.window.statusBar().currentMessage()
    assert d.move() and d.drop()
    dialog = _dialog(qtbot, submitter)
    assert [i.label for i in dialog.items] == ["train.py"]
    dialog.reject()


def test_several_files_queue_several_runs(qtbot, world, submitter) -> None:
    train = world.script()
    evaluate = world.script("eval.sh", "echo evaluating \"$@\"\n")
    job = world.files / "sweep.yaml"
    job.write_text(textwrap.dedent("""\
        name: ablation
        script: train.py
        gpus: 2
        sweep:
          seed: [0, 1]
    """))
    drop_files(world.window, [train, evaluate, job])
    dialog = _dialog(qtbot, submitter)
    assert dialog.count_label.text() == "Queues 4 runs"
    assert not dialog.name_edit.isEnabled() and not dialog.params.isEnabled()
    assert dialog.runs_view.topLevelItemCount() == 4
    # A shared setting changed here applies to every run; the rest stay as each file says.
    dialog.settings.priority_spin.setValue(5)
    dialog.revalidate()
    _press_enter(qtbot, dialog)
    runs = sorted(world.ctx.runstore.list_runs(), key=lambda r: r.name)
    assert [r.name for r in runs] == ["ablation-seed=0", "ablation-seed=1", "eval", "train"]
    assert all(r.spec["priority"] == 5 for r in runs)
    assert [r.spec["gpus"] for r in runs] == [2, 2, 1, 1]
    assert runs[0].spec["argv"] == ["python3", "train.py", "--seed", "0"]
    assert runs[2].spec["argv"] == ["bash", "eval.sh"]
    assert runs[3].spec["argv"][:4] == ["python3", "train.py", "--lr", "0.001"]
    assert world.window.statusBar().currentMessage().startswith("Queued 4 runs: ")


def test_a_dropped_folder_runs_its_training_script_and_uploads_it_whole(
        qtbot, world, submitter) -> None:
    project = world.files / "resnet"
    world.script("resnet/utils.py", "X = 1\n")
    world.script("resnet/scripts/prepare.sh", "true\n")
    world.script("resnet/train_resnet.py")
    drop_files(world.window, [project])
    dialog = _dialog(qtbot, submitter)
    assert dialog.entry_row.isVisible()
    entries = [dialog.entry_combo.itemText(i) for i in range(dialog.entry_combo.count())]
    assert entries == ["train_resnet.py", "utils.py", "scripts/prepare.sh"]
    assert dialog.command_edit.text() == "python3 train_resnet.py"
    assert {r.name for r in dialog.params.rows()} >= {"lr", "epochs"}
    dialog.entry_combo.setCurrentText("scripts/prepare.sh")
    qtbot.waitUntil(lambda: dialog.command_edit.text() == "bash scripts/prepare.sh",
                    timeout=3000)
    assert dialog.params.rows() == []
    dialog.revalidate()
    _press_enter(qtbot, dialog)
    (run,) = world.ctx.runstore.list_runs()
    assert run.spec["upload"] == str(project.resolve())
    assert run.spec["argv"] == ["bash", "scripts/prepare.sh"]
    assert run.name == "resnet"
