"""The submit dialog over a real store: sweeps, job-file errors, clone-and-edit, checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from make_submit_screenshot import SIZE, render
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from submit_fixtures import make_world

from app.core.jobs.jobspec import JobSpec
from app.ui.shell.selfcheck import is_blank
from app.ui.submit.dialog import SubmitDialog, open_submit_dialog
from app.ui.submit.form import ParamRow, parse_cell, read_params

pytestmark = pytest.mark.gui


@pytest.fixture
def world(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    w = make_world(tmp_path)
    qtbot.addWidget(w.window)
    w.window.show()
    yield w
    for dialog in w.window.findChildren(SubmitDialog):
        dialog.done(0)  # a failed test's dialog must not leave its worker behind
    w.window.bridge.detach()
    w.window.cluster_view.stop()
    w.monitor.stop()
    w.store.close()


def _open(qtbot, world, spec: dict | None = None, paths: tuple = ()) -> SubmitDialog:
    dialog = open_submit_dialog(world.window, world.ctx, spec, paths=list(paths))
    qtbot.waitUntil(lambda: bool(dialog.items), timeout=5000)
    return dialog


def _enter(qtbot, dialog: SubmitDialog) -> None:
    with qtbot.waitSignal(dialog.queued, timeout=5000):
        qtbot.keyClick(dialog.name_edit, Qt.Key.Key_Return)


def test_a_value_list_is_a_sweep_and_queues_every_combination(qtbot, world) -> None:
    dialog = _open(qtbot, world, paths=(world.script(),))
    dialog.params.set_value("lr", "1e-3, 3e-4")
    qtbot.waitUntil(lambda: dialog.count_label.text().startswith("Queues 2 runs"))
    dialog.params.set_value("seed", "0, 1, 2")
    qtbot.waitUntil(lambda: dialog.count_label.text() == "Queues 6 runs  (lr 2 × seed 3)")
    assert dialog.ok_button.text() == "Queue 6 runs"
    assert dialog.runs_view.topLevelItemCount() == 6
    _enter(qtbot, dialog)
    runs = world.ctx.runstore.list_runs()
    assert len(runs) == 6
    by_name = {r.name: r for r in runs}
    assert set(by_name) == {f"train-lr={lr}-seed={s}" for lr in ("0.001", "0.0003")
                            for s in (0, 1, 2)}
    run = by_name["train-lr=0.0003-seed=2"]
    assert run.spec["argv"] == ["python3", "train.py", "--lr", "0.0003", "--epochs", "10",
                                "--batch-size", "64", "--seed", "2"]
    assert run.spec["params"] == {"lr": 0.0003, "epochs": 10, "batch-size": 64,
                                  "amp": False, "seed": 2}
    assert world.wakes == [1]


def test_a_malformed_job_file_shows_its_line_and_queues_nothing(qtbot, world) -> None:
    job = world.files / "broken.yaml"
    job.write_text("name: broken\ncommand: python train.py\ngpus: [1, 2\nsweep:\n")
    dialog = _open(qtbot, world, paths=(job,))
    assert not dialog.ok_button.isEnabled()
    assert dialog.problems_area.isVisible()
    (problem,) = dialog.problems()
    assert problem.startswith(f"{job}: line 4, column 6: YAML syntax error")
    assert "line 4" in dialog.problems_label.text()
    qtbot.keyClick(dialog.name_edit, Qt.Key.Key_Return)
    qtbot.wait(100)
    assert dialog.isVisible() and world.ctx.runstore.list_runs() == []
    dialog.reject()


def test_job_file_field_errors_are_listed_per_field(qtbot, world) -> None:
    job = world.files / "fields.yaml"
    job.write_text("command: python train.py\ngpus: two\nhosts: gpu-z\n")
    dialog = _open(qtbot, world, paths=(job,))
    problems = dialog.problems()
    assert f'{job}: gpus: must be a whole number ≥ 0, got "two"' in problems
    assert any("unknown host \"gpu-z\"" in p and "gpu-a, gpu-b" in p for p in problems)
    assert not dialog.ok_button.isEnabled()
    # The form does not show the unreadable file, so none of its fields is marked.
    assert not dialog.settings.gpus_spin.property("invalid")
    assert not dialog.settings.gpus_spin.isEnabled()
    dialog.reject()


def test_a_job_file_sweep_is_listed_and_queued(qtbot, world) -> None:
    world.script()
    job = world.files / "grid.toml"
    job.write_text('script = "train.py"\ngpus = 2\n[sweep]\nlr = [0.1, 0.01, 0.001]\n')
    dialog = _open(qtbot, world, paths=(job,))
    assert dialog.count_label.text() == "Queues 3 runs"
    assert dialog.tabs.currentWidget() is dialog.runs_view
    assert dialog.settings.gpus_spin.value() == 2
    _enter(qtbot, dialog)
    runs = world.ctx.runstore.list_runs()
    assert sorted(r.spec["params"]["lr"] for r in runs) == [0.001, 0.01, 0.1]
    assert all(r.spec["gpus"] == 2 for r in runs)


def test_problems_are_shown_inline_and_block_queueing(qtbot, world) -> None:
    world.online()  # 4 GPUs per host, known from their hello
    dialog = _open(qtbot, world, paths=(world.script(),))
    assert dialog.ok_button.isEnabled()
    dialog.settings.time_edit.setText("soon")
    dialog.params.set_value("epochs", "1, 1")
    dialog.settings.gpus_spin.setValue(8)
    qtbot.waitUntil(lambda: not dialog.ok_button.isEnabled())
    problems = dialog.problems()
    assert 'time_limit: must be a duration like 2h30m, 90m or 3600, got "soon"' in problems
    assert 'params: epochs: a value appears twice in "1, 1"' in problems
    assert any(p.startswith("gpus: impossible: this run needs 8 GPUs on one host; the "
                            "largest host (") and p.endswith(") has 4") for p in problems)
    assert dialog.settings.gpus_spin.property("invalid") is True
    assert dialog.settings.time_edit.property("invalid") is True
    assert "soon" in dialog.settings.time_edit.toolTip()
    assert dialog.params.table.property("invalid") is True
    dialog.settings.time_edit.setText("2h30m")
    dialog.params.set_value("epochs", "3")
    dialog.settings.gpus_spin.setValue(2)
    qtbot.waitUntil(lambda: dialog.ok_button.isEnabled())
    assert dialog.settings.time_edit.property("invalid") is False
    _enter(qtbot, dialog)
    (run,) = world.ctx.runstore.list_runs()
    assert run.spec["time_limit_s"] == 9000 and run.spec["gpus"] == 2
    assert "--epochs" in run.spec["argv"] and run.spec["params"]["epochs"] == 3


def test_environment_and_placement_settings_reach_the_spec(qtbot, world) -> None:
    dialog = _open(qtbot, world, paths=(world.script(),))
    s = dialog.settings
    s.host_combo.setCurrentIndex(s.host_combo.findData("gpu-a"))
    s.memory_edit.setText("20GiB")
    s.priority_spin.setValue(7)
    s.tags_edit.setText("ablation, night")
    s.retry_check.setChecked(False)
    s.conda_edit.setText("torch")
    s.setup_edit.setPlainText("module load cuda/12.4\n")
    row = s.env_table.add_row()
    s.env_table.table.item(row, 0).setText("WANDB_MODE")
    s.env_table.table.item(row, 1).setText("offline")
    dialog.name_edit.setText("nightly")
    dialog.command_edit.setText("python3 -u train.py")
    dialog.params.set_value("amp", "true")
    dialog.revalidate()
    _enter(qtbot, dialog)
    (run,) = world.ctx.runstore.list_runs()
    spec = JobSpec.from_dict(run.spec)
    assert spec.name == "nightly" and spec.hosts == ("gpu-a",)
    assert spec.argv == ("python3", "-u", "train.py", "--lr", "0.001", "--epochs", "10",
                         "--batch-size", "64", "--amp")
    assert spec.min_free_mem_mib == 20480 and spec.priority == 7
    assert spec.tags == ("ablation", "night") and spec.retry_on_lost is False
    assert spec.conda_env == "torch" and spec.setup == ("module load cuda/12.4",)
    assert spec.env == {"WANDB_MODE": "offline"} and spec.params["amp"] is True


def test_clone_and_edit_moves_params_to_the_table(qtbot, world) -> None:
    script = world.script()
    original = JobSpec(name="train-lr3e-4", argv=("python3", "train.py", "--lr", "0.0003",
                                                  "--epochs", "10"),
                       upload=str(script), gpus=2, hosts=("gpu-b",), tags=("base",),
                       params={"lr": 0.0003, "epochs": 10})
    dialog = _open(qtbot, world, spec=original.to_dict())
    assert dialog.command_edit.text() == "python3 train.py"
    rows = {r.name: r.text for r in dialog.params.rows()}
    assert rows["lr"] == "0.0003" and rows["epochs"] == "10" and rows["seed"] == ""
    assert dialog.settings.host_combo.currentData() == "gpu-b"
    assert dialog.settings.gpus_spin.value() == 2
    dialog.name_edit.setText("train-lr1e-4")
    dialog.params.set_value("lr", "1e-4")
    dialog.revalidate()
    _enter(qtbot, dialog)
    (run,) = world.ctx.runstore.list_runs()
    assert run.spec["argv"] == ["python3", "train.py", "--lr", "0.0001", "--epochs", "10"]
    assert run.spec["hosts"] == ["gpu-b"] and run.spec["gpus"] == 2
    assert run.spec["tags"] == ["base"] and run.name == "train-lr1e-4"


def test_a_parameter_in_both_command_and_table_is_a_problem(qtbot, world) -> None:
    dialog = _open(qtbot, world, paths=(world.script(),))
    dialog.command_edit.setText("python3 train.py --lr 0.5")
    dialog.revalidate()
    assert "params: lr is in the command and in the table; keep it in one place" in \
        dialog.problems()
    assert not dialog.ok_button.isEnabled()
    dialog.reject()


def test_without_hosts_nothing_can_be_queued(qtbot, world) -> None:
    for name in ("gpu-a", "gpu-b"):
        world.store.remove_host(name)
    dialog = _open(qtbot, world, paths=(world.script(),))
    assert "hosts: no hosts yet; add one with Add host… first" in dialog.problems()
    assert not dialog.ok_button.isEnabled()
    dialog.reject()


def test_cells_read_as_values_and_sweeps() -> None:
    assert parse_cell("lr", "1e-3, 3e-4") == ([0.001, 0.0003], None)
    assert parse_cell("tag", '"a,b"') == (["a,b"], None)
    assert parse_cell("amp", "yes", is_flag=True) == ([True], None)
    assert parse_cell("amp", "maybe", is_flag=True)[1] == \
        'params: amp: a flag is true or false, got "maybe"'
    assert parse_cell("lr", "1,,2")[1] == 'params: lr: an empty value between commas in "1,,2"'
    assert parse_cell("x", "  ") == ([], None)
    fixed, grid, problems = read_params([ParamRow("lr", "0.1"), ParamRow("seed", "0,1"),
                                         ParamRow("LR", "1"), ParamRow("1x", "2"),
                                         ParamRow("lr", "3")])
    assert fixed == {"lr": 0.1, "LR": 1} and grid == {"seed": [0, 1]}
    assert problems == ['params: "1x" is not a valid parameter name (letters, digits, _ . -; '
                        "starting with a letter)", "params: lr is listed twice"]


def test_a_huge_sweep_is_refused_before_it_is_built(qtbot, world) -> None:
    dialog = _open(qtbot, world, paths=(world.script(),))
    values = ", ".join(str(i) for i in range(200))
    dialog.params.set_value("seed", values)
    dialog.params.set_value("epochs", values)
    dialog.revalidate()
    assert dialog.count_label.text().startswith("Queues 40000 runs")
    assert any("40,000 combinations" in p for p in dialog.problems())
    assert not dialog.ok_button.isEnabled()
    dialog.reject()


def test_screenshot_renders(qtbot, tmp_path: Path) -> None:
    paths = render(tmp_path / "shots")
    for path in paths:
        image = QImage(str(path))
        assert (image.width(), image.height()) == SIZE
        assert not is_blank(image)


def test_a_misspelt_job_file_key_is_named_with_a_suggestion(qtbot, world) -> None:
    job = world.files / "typo.yml"
    job.write_text(textwrap.dedent("""\
        command: python train.py
        gpu: 2
    """))
    dialog = _open(qtbot, world, paths=(job,))
    assert f'{job}: unknown key "gpu" (did you mean "gpus"?)' in dialog.problems()
    dialog.reject()


def test_a_job_file_naming_an_unset_secret_queues_nothing(qtbot, world, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    from tests.harness.file_keyring import ENV_VAR, FileKeyring

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "keyring.json"))
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    try:
        world.script()
        job = world.files / "needs_token.yaml"
        job.write_text("script: train.py\nsecrets: [WANDB_API_KEY]\n")
        dialog = _open(qtbot, world, paths=(job,))
        (problem,) = dialog.problems()
        assert problem.startswith("needs_token.yaml: ") and "WANDB_API_KEY" in problem
        assert "labdeck secrets set WANDB_API_KEY" in problem
        assert not dialog.ok_button.isEnabled()
        dialog.reject()
        from app.core.jobs.secrets import set_secret

        set_secret("WANDB_API_KEY", "s3cr3t-value")
        dialog = _open(qtbot, world, paths=(job,))
        assert dialog.problems() == [] and dialog.ok_button.isEnabled()
        _enter(qtbot, dialog)
        (run,) = world.ctx.runstore.list_runs()
        assert run.spec["secrets"] == ["WANDB_API_KEY"]
        assert "s3cr3t-value" not in str(run.spec)
    finally:
        keyring.set_keyring(before)
