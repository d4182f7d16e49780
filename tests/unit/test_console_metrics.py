"""The console parser: what real training output yields, what prose does not, and the
byte-stream splitter whose carry survives any chunking and a restart."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.console.parse import (
    MAX_LINE_BYTES,
    ConsoleSplitter,
    compile_patterns,
    fixed_series_pattern,
    parse_line,
    parse_lines,
    pattern_problems,
)
from app.core.console.reading import is_noise
from app.core.jobs.jobfile import parse_job_text
from app.core.jobs.jobspec import JobFileError, JobSpec


def same(a: list[tuple[str, int | None, float]], b: list[tuple[str, int | None, float]]) -> bool:
    """Equal, with NaN equal to NaN."""
    if len(a) != len(b):
        return False
    for (s1, t1, v1), (s2, t2, v2) in zip(a, b, strict=True):
        if s1 != s2 or t1 != t2:
            return False
        if not (v1 == v2 or (math.isnan(v1) and math.isnan(v2))):
            return False
    return True


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("step 100 loss=0.31 acc: 0.9", [("loss", 100, 0.31), ("acc", 100, 0.9)]),
        ("epoch 3 | step 1200 | loss: 0.0124",
         [("epoch", 1200, 3.0), ("loss", 1200, 0.0124)]),
        ("Epoch 1/10 ... loss: 0.3", [("epoch", 1, 1.0), ("loss", 1, 0.3)]),
        ("| epoch 001 | loss 4.22 | ppl 18.6 |",
         [("epoch", 1, 1.0), ("loss", 1, 4.22), ("ppl", 1, 18.6)]),
        ("Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.302585",
         [("epoch", 1, 1.0), ("Loss", 1, 2.302585)]),
        ("step=7, train/loss=1.5e-3; val.acc=0.5", [("train/loss", 7, 1.5e-3),
                                                    ("val.acc", 7, 0.5)]),
        ("global_step: 42 lr = 3e-4", [("lr", 42, 3e-4)]),
        ("iter 9: loss=-0.5", [("loss", 9, -0.5)]),
        ("[it 12] loss=+2", [("loss", 12, 2.0)]),
        ("it 5 step=10 global_step=3 loss=1", [("loss", 10, 1.0)]),  # step wins
        ("step=1.5 loss=1", [("step", None, 1.5), ("loss", None, 1.0)]),  # not a counter
        ("1875/1875 [====] - 3s 1ms/step - loss: 0.2950 - accuracy: 0.9150",
         [("loss", None, 0.295), ("accuracy", None, 0.915)]),
        ("Test set: Average loss: 0.0000, Accuracy: 9913/10000 (99%)", [("loss", None, 0.0)]),
        ("x=.5 y=1. z=1E+3", [("x", None, 0.5), ("y", None, 1.0), ("z", None, 1000.0)]),
        ("time: 3.2s acc: 90%", [("acc", None, 90.0)]),  # a percentage is its number
    ],
)
def test_training_output_yields_its_points(
    line: str, expected: list[tuple[str, int | None, float]]
) -> None:
    assert parse_line(line) == expected


def test_nan_inf_and_huge_values_are_kept_as_floats() -> None:
    points = parse_line("a=nan b=NaN c=inf d=-inf e=Infinity f=1e300 g=1e400 "
                        "h=123456789012345678901234567890")
    values = dict((s, v) for s, _t, v in points)
    assert math.isnan(values["a"]) and math.isnan(values["b"])
    assert values["c"] == math.inf and values["d"] == -math.inf and values["e"] == math.inf
    assert values["f"] == 1e300 and values["g"] == math.inf
    assert values["h"] == 1.2345678901234568e29


@pytest.mark.parametrize(
    "line",
    [
        "The run took 5 minutes and 3 seconds at 12:30",
        "2024-01-01 12:30:45 INFO started, eta: 0:01:23, 45%",
        "time: 3.2s speed: 4x version: 1.2.3",
        "I0101 12:00:00.123 1234 gpu_resources.cc:61] created device",
        "pid: 4242 port=29500 local_rank: 0 CUDA Version: 12",
        "Accuracy: 9913/10000 done",
        "see http://host:8080/path",
        "--lr=0.1 --batch=32",
        "info: fine, loss: unknown",
        "a | b | c",
        "",
        "\x00\x01\x02=3",
    ],
)
def test_prose_timestamps_percentages_and_units_yield_nothing(line: str) -> None:
    assert parse_line(line) == []


def test_a_progress_bar_counts_by_its_last_redraw_only() -> None:
    bar = ("Epoch 1:  10%|█         | 100/1000 [00:01<00:09, loss=0.9]\r"
           "Epoch 1:  45%|████▌     | 450/1000 [00:10<00:12, 43.2it/s, loss=0.312]\r\n")
    assert parse_line(bar) == [("epoch", 1, 1.0), ("loss", 1, 0.312)]
    assert parse_line("loss=1\r\n") == [("loss", None, 1.0)]  # a CRLF line end is no redraw


def test_overlong_lines_are_ignored() -> None:
    assert parse_line("loss=1 " + "x" * MAX_LINE_BYTES) == []


def test_fixed_and_named_patterns_replace_the_builtin_reading_of_a_line() -> None:
    patterns = compile_patterns([
        fixed_series_pattern("val_loss", r"validation loss (?P<value>\S+) at (?P<step>\d+)"),
        r"(?P<name>\w+) is (?P<value>[-\d.e]+)",
    ])
    assert [p.series for p in patterns] == ["val_loss", None]
    lines = ["validation loss 0.25 at 300 (best=0.2)", "acc is 0.5, mse is 1e-3", "loss=3"]
    assert parse_lines(lines, patterns) == [
        ("val_loss", 300, 0.25), ("acc", None, 0.5), ("mse", None, 1e-3), ("loss", None, 3.0),
    ]
    # Strings work too; a value the pattern catches but that is no number is skipped.
    assert parse_lines(["x is abc"], [r"(?P<name>\w+) is (?P<value>\w+)"]) == []


def test_pattern_problems_name_each_unusable_pattern() -> None:
    problems = pattern_problems(["(", "abc", r"(?P<value>\d+)", r"(?P<name>a)(?P<value>\d)",
                                 fixed_series_pattern("s", r"(?P<value>\d)")])
    assert len(problems) == 4, problems
    assert "not a valid regular expression" in problems[0]
    assert "(?P<value>" in problems[1] and "(?P<name>" in problems[2]
    assert "(?P<name>" in problems[3]
    assert pattern_problems(["(?P<value>x)"] * 40)[0].startswith("at most")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        compile_patterns(["("])


# -- the splitter -----------------------------------------------------------------


def split_all(data: bytes, cuts: list[int]) -> tuple[list[str], ConsoleSplitter]:
    splitter = ConsoleSplitter()
    lines: list[str] = []
    prev = 0
    for cut in [*sorted({c for c in cuts if 0 < c < len(data)}), len(data)]:
        lines += splitter.feed(data[prev:cut])
        prev = cut
    return lines, splitter


def test_splitter_keeps_a_partial_line_and_decodes_bad_utf8() -> None:
    splitter = ConsoleSplitter()
    assert splitter.feed(b"loss=1\nlo") == ["loss=1"]
    assert splitter.carry == b"lo"
    assert splitter.feed(b"ss=\xff2\n\n") == ["loss=\ufffd2"]
    assert splitter.feed(b"a\rb\r") == [] and splitter.carry == b"b\r"
    assert splitter.feed(b"\r\r\n") == ["b"]


def test_splitter_memory_stays_bounded_for_a_huge_line_and_endless_redraws() -> None:
    splitter = ConsoleSplitter()
    for _ in range(40):
        splitter.feed(b"y" * 8192)
    assert splitter.overlong and splitter.carry == b""
    assert splitter.feed(b"tail\nloss=2\n") == ["loss=2"]
    for i in range(10_000):
        splitter.feed(b"\rloss=%d" % i)
    assert len(splitter.carry) < 32
    assert splitter.feed(b"\n") == ["loss=9999"]


LINE_PARTS = st.sampled_from([
    b"loss=0.5", b" ", b"step 3", b"\r", b"\n", b"\r\n", b"acc: 1e-3", b"|", b"x",
    b"\xff\xfe", "é".encode(), b"nan", b"epoch 2/9", b"y" * 300,
])


@settings(max_examples=200, deadline=None)
@given(st.lists(LINE_PARTS, max_size=60), st.lists(st.integers(0, 20_000), max_size=12))
def test_any_chunking_gives_the_lines_of_the_whole(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole, one = split_all(data, [])
    pieces, many = split_all(data, cuts)
    assert pieces == whole
    assert many.carry == one.carry and many.overlong == one.overlong
    # The splitter agrees with the line parser over the same text.
    text_lines = data.decode("utf-8", errors="replace").split("\n")[:-1]
    assert same(parse_lines(pieces), parse_lines(text_lines))


@settings(max_examples=150, deadline=None)
@given(st.lists(LINE_PARTS, max_size=60), st.integers(0, 20_000), st.integers(0, 400))
def test_a_restart_rebuilds_the_carry_from_the_stored_tail(
    parts: list[bytes], cut: int, long_run: int
) -> None:
    data = b"".join(parts)
    # Sometimes a line longer than the limit straddles the restart point.
    if long_run > 300:
        data = data + b"z" * (MAX_LINE_BYTES + long_run) + b"\rloss=5\n" + data
    cut = min(cut, len(data))
    whole, _ = split_all(data, [])
    before, _ = split_all(data[:cut], [])
    window = data[max(0, cut - MAX_LINE_BYTES - 2) : cut]
    resumed = ConsoleSplitter.from_log_tail(window, at_file_start=cut <= MAX_LINE_BYTES + 2)
    after = resumed.feed(data[cut:])
    assert before + after == whole


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_./-]{0,12}", fullmatch=True).filter(
    lambda n: n.lower() not in {"step", "global_step", "iter", "iteration", "it", "epoch",
                                "num_updates"}
    and not is_noise(n, ":", "1")  # source locations, pids, ports: never a series
)
VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30).map(float)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=8),
       st.sampled_from(["=", ": ", " = "]), st.sampled_from([" ", ", ", " | ", "\t"]),
       st.none() | st.integers(0, 10**12))
def test_generated_name_value_lines_round_trip(
    pairs: list[tuple[str, float]], sep: str, joiner: str, step: int | None
) -> None:
    fields = [f"{name}{sep}{value!r}" for name, value in pairs]
    if step is not None:
        fields.insert(0, f"step={step}")
    line = joiner.join(fields)
    assert same(parse_line(line), [(name, step, value) for name, value in pairs]), line


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.binary(max_size=300))
def test_arbitrary_text_never_raises(text: str, raw: bytes) -> None:
    for point in parse_line(text) + parse_lines(text.splitlines()):
        assert isinstance(point[0], str) and isinstance(point[2], float)
    ConsoleSplitter().feed(raw)
    ConsoleSplitter.from_log_tail(raw, at_file_start=False).feed(raw)


def test_job_files_give_patterns_as_regexes_or_series_mappings(tmp_path: Path) -> None:
    text = (
        "command: python3 train.py\n"
        "metric_patterns:\n"
        "  - '(?P<name>\\w+) is (?P<value>\\S+)'\n"
        "  - val_loss: 'val (?P<value>\\S+) at (?P<step>\\d+)'\n"
    )
    (spec,) = parse_job_text(text, fmt="yaml", source="job.yaml", base_dir=tmp_path)
    assert spec.metric_patterns == (
        "(?P<name>\\w+) is (?P<value>\\S+)",
        fixed_series_pattern("val_loss", "val (?P<value>\\S+) at (?P<step>\\d+)"),
    )
    assert parse_lines(["val 0.5 at 7", "acc is 1"], spec.metric_patterns) == [
        ("val_loss", 7, 0.5), ("acc", None, 1.0)]
    # The spec survives the store's JSON round trip.
    assert JobSpec.from_dict(spec.to_dict()).metric_patterns == spec.metric_patterns
    single = parse_job_text("command: x\nmetric_patterns: {acc: 'acc (?P<value>\\S+)'}\n",
                            fmt="yaml", source="j.yaml", base_dir=tmp_path)
    assert single[0].metric_patterns == (fixed_series_pattern("acc", "acc (?P<value>\\S+)"),)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("'('", "not a valid regular expression"),
        ("'(?P<value>x)'", "needs a named group (?P<name>"),
        ("[{'bad name': 'x (?P<value>y)'}]", "is not a usable series name"),
        ("[{ok: 3}]", "ok: must be a regular expression"),
        ("7", "must be a regular expression, a list of them"),
    ],
)
def test_job_file_pattern_problems_are_reported(tmp_path: Path, value: str, needle: str) -> None:
    with pytest.raises(JobFileError) as caught:
        parse_job_text(f"command: x\nmetric_patterns: {value}\n", fmt="yaml",
                       source="j.yaml", base_dir=tmp_path)
    assert any(p.startswith("j.yaml: metric_patterns: ") and needle in p
               for p in caught.value.problems), caught.value.problems
