"""Parameters from arguments, arguments from parameters, and argparse options in scripts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.jobs.argparams import (
    ScriptArg,
    apply_params,
    convert_value,
    detect_script_args,
    detect_source_args,
    param_args,
    parse_params,
    script_defaults,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lr", "3e-4", "--seed", "0"], {"lr": 3e-4, "seed": 0}),
        (["--lr=3e-4", "--name=run one"], {"lr": 3e-4, "name": "run one"}),
        (["--amp", "--epochs", "10"], {"amp": True, "epochs": 10}),
        (["--offset", "-1", "--scale", "-1e-3"], {"offset": -1, "scale": -1e-3}),
        (["--dry-run", "--x", "1"], {"dry-run": True, "x": 1}),
        (["--out", "-", "--k", "v"], {"out": "-", "k": "v"}),
        (["data.csv", "-v", "--k", "v", "pos"], {"k": "v"}),
        (["--k", "1", "--", "--after", "2"], {"k": 1}),
        (["--k", "--"], {"k": True}),
        (["--seed", "1", "--seed", "2"], {"seed": 2}),
        (["--learning-rate", "1", "--learning_rate", "2"], {"learning_rate": 2}),
        (["--layers", "1", "2", "3"], {"layers": 1}),
        (["--ckpt", "007", "--tag", "1.0.2"], {"ckpt": "007", "tag": "1.0.2"}),
        (["--x", "inf", "--y", "nan", "--z", "1e999"], {"x": "inf", "y": "nan", "z": "1e999"}),
        (["--", "--k", "v"], {}),
        (["---bad", "--9x", "1", "--=v", "--"], {}),
        (["--empty", ""], {"empty": ""}),
        (["--k=", "--j=a=b"], {"k": "", "j": "a=b"}),
    ],
)
def test_parse_params(args: list[str], expected: dict[str, Any]) -> None:
    assert parse_params(args) == expected


def test_known_flags_do_not_swallow_the_next_word() -> None:
    args = ["--verbose", "data.csv", "--lr", "0.1"]
    assert parse_params(args) == {"verbose": "data.csv", "lr": 0.1}
    assert parse_params(args, ["verbose"]) == {"verbose": True, "lr": 0.1}
    # Flags match with - and _ treated the same, like argparse's dest.
    assert parse_params(["--dry_run", "x"], ["dry-run"]) == {"dry_run": True}


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("-3", -3), ("+3", 3), ("3.", 3.0), (".5", 0.5), ("1e-3", 1e-3),
     ("2E5", 2e5), ("0", 0), ("007", "007"), ("0x10", "0x10"), ("1_000", "1_000"),
     ("true", "true"), ("", ""), ("1e", "1e"), (" 1", " 1"), ("1e400", "1e400")],
)
def test_convert_value(text: str, value: Any) -> None:
    got = convert_value(text)
    assert got == value and type(got) is type(value)


def test_param_args_forms() -> None:
    assert param_args({"lr": 3e-4, "amp": True, "off": False, "none": None, "tag": "a b",
                       "neg": -2, "opt": "-x"}) == [
        "--lr", "0.0003", "--amp", "--tag", "a b", "--neg", "-2", "--opt=-x"]


_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
_VALUES = st.one_of(
    st.text(max_size=20), st.integers(-10**6, 10**6), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from(["$(touch x)", "`id`", "a; rm -rf /", "line\nbreak", "'\"", "--x", "-"]),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=6))
def test_params_survive_being_written_as_arguments(params: dict[str, Any]) -> None:
    expected = {
        k: convert_value(v) if isinstance(v, str) else v
        for k, v in params.items() if v is not None and v is not False
    }
    parsed = parse_params(param_args(params))
    assert parsed == expected
    assert all(type(parsed[k]) is type(v) for k, v in expected.items() if not isinstance(v, str))


def test_apply_params_appends_keeps_and_reports() -> None:
    argv = ["python3", "t.py", "--lr", "0.1", "--seed=3"]
    out, conflicts = apply_params(argv, {"lr": 0.1, "seed": 3, "bs": 64, "amp": True},
                                  replace=False)
    assert out == [*argv, "--bs", "64", "--amp"] and conflicts == []
    out, conflicts = apply_params(argv, {"lr": 0.2, "seed": "3"}, replace=False)
    assert out == argv and conflicts == ["lr (args say 0.1)"]


def test_apply_params_replace_rewrites_in_place() -> None:
    argv = ["python3", "t.py", "--lr", "0.1", "data", "--seed=3", "--lr", "0.5", "--amp"]
    out, _ = apply_params(argv, {"lr": 0.01, "seed": 4, "amp": False}, replace=True)
    assert out == ["python3", "t.py", "data", "--seed", "4", "--lr", "0.01"]
    out, _ = apply_params(["p", "--learning-rate", "1"], {"learning_rate": 2}, replace=True)
    assert out == ["p", "--learning_rate", "2"]


SCRIPT = '''
import argparse, os
open(os.environ["CANARY"], "w").write("ran")
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=3e-4, help="learning rate")
parser.add_argument("-b", "--batch-size", type=int, default="64")
parser.add_argument("--epochs", default=10)
parser.add_argument("--amp", action="store_true")
parser.add_argument("--no-eval", dest="evaluate", action="store_false")
parser.add_argument("--opt", choices=["adam", "sgd"], default="adam")
parser.add_argument("--data", default=os.environ.get("DATA"))
parser.add_argument("--scale", type=float, default=-1.5)
parser.add_argument("--bad", type=int, default="many")
parser.add_argument("positional")
parser.add_argument("-q")
parser.add_argument(*names)
sub = parser.add_subparsers().add_parser("x")
sub.add_argument("--inner", type=int)
parser.add_argument("--lr", default=1.0)
'''


def test_detects_argparse_options_without_running_the_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv("CANARY", str(canary))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    found = detect_script_args(script)
    assert not canary.exists()
    by_name = {a.name: a for a in found}
    assert list(by_name) == ["lr", "batch-size", "epochs", "amp", "no-eval", "opt", "data",
                             "scale", "bad", "inner"]
    assert by_name["lr"] == ScriptArg("lr", 3e-4, "float", help="learning rate")
    assert by_name["batch-size"].default == 64  # argparse applies type= to a str default
    assert by_name["epochs"] == ScriptArg("epochs", 10, "int")
    assert by_name["amp"] == ScriptArg("amp", False, "bool", is_flag=True)
    assert by_name["no-eval"] == ScriptArg("no-eval", True, "bool", is_flag=True)
    assert by_name["opt"].choices == ("adam", "sgd")
    assert by_name["data"].default is None
    assert by_name["scale"].default == -1.5
    assert by_name["bad"].default == "many"
    assert by_name["inner"] == ScriptArg("inner", None, "int")
    assert script_defaults(script)["lr"] == 3e-4


@pytest.mark.parametrize(
    "source",
    [
        "def broken(:\n    parser.add_argument('--lr', default=1)\n",
        "parser.add_argument('--lr', default=1\n",
        b"\xff\xfe\x00garbage",
        "x = 1\0\n",
        "(" * 200_000,
        "-" * 100_000 + "1",
        "",
    ],
)
def test_broken_scripts_give_nothing(source: str | bytes) -> None:
    assert detect_source_args(source) == []


def test_unreadable_or_missing_script_gives_nothing(tmp_path: Path) -> None:
    assert detect_script_args(tmp_path / "missing.py") == []
    assert detect_script_args(tmp_path) == []
    assert script_defaults(Path(sys.executable)) == {}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_detection_never_raises(source: str | bytes) -> None:
    assert isinstance(detect_source_args(source), list)


# As ultralytics/yolov5 train.py and pytorch-image-models train.py declare them.
ALIASED = """
import argparse
parser = argparse.ArgumentParser()
parser.add_argument('--imgsz', '--img', '--img-size', type=int, default=640)
parser.add_argument('--jsd-loss', action='store_true', default=False)
parser.add_argument('--lr', type=float, default=0.01)
parser.add_argument('--lr-noise', type=float, default=None)
"""


def test_aliases_and_abbreviations_are_named_as_the_script_names_them() -> None:
    options = detect_source_args(ALIASED)
    assert [(a.name, a.aliases) for a in options] == [
        ("imgsz", ("img", "img-size")), ("jsd-loss", ()), ("lr", ()), ("lr-noise", ())]
    args = ["--img", "320", "--jsd", "data.yaml", "--lr-n", "0.1", "--lr", "0.02"]
    # --jsd abbreviates the flag --jsd-loss (so data.yaml stays a positional);
    # --lr is exact although --lr-noise starts with it; --lr-n abbreviates --lr-noise.
    assert parse_params(args, options) == {"imgsz": 320, "jsd-loss": True, "lr-noise": 0.1,
                                           "lr": 0.02}
    # Without the declarations the words are taken as written.
    assert parse_params(["--img", "320"]) == {"img": 320}
    # A sweep over imgsz rewrites the --img the user wrote, not beside it.
    argv, conflicts = apply_params(["train.py", "--img", "320"], {"imgsz": 640}, replace=True,
                                   options=options)
    assert (argv, conflicts) == (["train.py", "--imgsz", "640"], [])
    # An ambiguous abbreviation is left as written (argparse refuses it too).
    assert parse_params(["--l", "1"], options) == {"l": 1}
