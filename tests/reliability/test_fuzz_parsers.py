"""Fuzzing the parsers of files and tool output: job files (YAML/TOML, incl. bombs), the
console metric parser, the nvidia-smi parser and the agent's tfevents reader.

Inputs are arbitrary bytes/text and mutations of real samples (the H100 recordings, event
files written by TensorBoard's own writer, realistic job files). The contract is
tests/reliability/fuzz_contract.py: a value or the parser's own clear error, in bounded time.
"""

from __future__ import annotations

import itertools
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.console.parse import ConsoleSplitter, compile_patterns, parse_line
from app.core.jobs.jobfile import parse_job_text
from app.core.jobs.jobspec import JobFileError, JobSpec
from tests.harness import tfrecord
from tests.harness.tb_events import write_events
from tests.reliability.fuzz_contract import fuzz, holds, mutated, time_bound

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import gpu_smi  # noqa: E402
import tfevents  # noqa: E402

pytestmark = [pytest.mark.reliability]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "nvidia-h100"

JOB_YAML = b"""\
name: resnet-{lr}
command: python3 train.py --epochs 10
env: {WANDB_MODE: offline, SEED: 7}
setup: [module load cuda/12]
gpus: 2
min_free_mem_mib: 20GiB
host_tags: [a100]
tags: &t [baseline, "x y"]
params: {wd: 3e-4, amp: true}
sweep: {lr: [0.1, 0.01], bs: [32, 64]}
time_limit: 2h30m
retry_on_lost: true
max_retries: 2
metric_patterns: {val_loss: 'val (?P<value>[0-9.]+)'}
"""
JOB_YAML_SHELL = b"""\
shell: |
  cd data && python3 t.py --lr 0.1 | tee log
priority: -5
hosts: gpu1
pin_gpus: [0, 1]
base: &b {a: 1}
"""
JOB_TOML = b"""\
name = "exp"
command = ["python3", "-u", "t.py", "--bs", 64]
workdir = "~/proj"
gpus = 1
time_limit = 5400
[env]
A = "1"
[params]
lr = 0.001
[sweep]
seed = [1, 2, 3]
"""
JOB_SAMPLES = [JOB_YAML, JOB_YAML_SHELL, JOB_TOML]


def _job(data: bytes, fmt: str) -> object:
    return parse_job_text(data, fmt=fmt, source="job", base_dir=Path("/nonexistent"))


def _job_holds(data: bytes, fmt: str) -> None:
    result = holds(lambda d: _job(d, fmt), data, (JobFileError,))
    if isinstance(result, JobFileError):
        assert result.problems and all(p.startswith("job: ") for p in result.problems)
    else:
        assert isinstance(result, list) and all(isinstance(s, JobSpec) for s in result)


def test_the_real_samples_are_valid_job_files() -> None:
    """The mutation seeds parse, so mutations start from files that mean something."""
    assert len(_job(JOB_YAML, "yaml")) == 4  # type: ignore[arg-type]
    assert _job(JOB_YAML_SHELL.replace(b"base: &b {a: 1}\n", b""), "yaml")
    assert len(_job(JOB_TOML, "toml")) == 3  # type: ignore[arg-type]


@fuzz(150, 3000)
@given(mutated(JOB_SAMPLES), st.sampled_from(["yaml", "toml"]))
def test_mutated_job_files_give_specs_or_a_job_file_error(data: bytes, fmt: str) -> None:
    _job_holds(data, fmt)


@fuzz(80, 2000)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode),
       st.sampled_from(["yaml", "toml"]))
def test_arbitrary_bytes_as_job_files(data: bytes, fmt: str) -> None:
    _job_holds(data, fmt)


def _laughs(levels: int = 9) -> str:
    parts = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    parts += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "[" + ", ".join(parts) + "]"


BOMBS = {
    # 9**10 strings if expanded; safe_load shares the aliased lists instead.
    "yaml-billion-laughs-top": ("yaml", "lols: " + _laughs() + "\ncommand: [x]\n"),
    "yaml-billion-laughs-params": ("yaml", "command: [x]\nparams: {p: " + _laughs() + "}\n"),
    "yaml-billion-laughs-sweep": ("yaml", "command: [x]\nsweep: {p: " + _laughs() + "}\n"),
    "yaml-billion-laughs-args": ("yaml", "script: t.py\nargs: " + _laughs() + "\n"),
    "yaml-laughs-in-merge-key": ("yaml", "b: &b {x: " + _laughs() + "}\nc: {<<: *b}\n"),
    "yaml-deep-flow": ("yaml", "command: " + "[" * 50_000 + "]" * 50_000),
    "yaml-deep-block": ("yaml", "".join(" " * i + f"k{i}:\n" for i in range(2000))),
    "yaml-python-tag": ("yaml", "!!python/object/apply:os.system ['touch /tmp/labdeck-pwn']\n"),
    "yaml-huge-int": ("yaml", "command: [x]\ngpus: " + "9" * 5000 + "\n"),
    "yaml-huge-float": ("yaml", "command: [x]\ngpus: 1e400\npriority: -1e400\n"),
    "yaml-bad-date": ("yaml", "command: [x]\nname: 2020-13-45\n"),
    "toml-deep-array": ("toml", "command = " + "[" * 50_000 + "]" * 50_000),
    "toml-deep-dotted-key": ("toml", "a" + ".a" * 100_000 + " = 1\n"),
    "toml-huge-int": ("toml", "command = ['x']\ngpus = " + "9" * 5000 + "\n"),
    "toml-inf": ("toml", "command = ['x']\ngpus = inf\npriority = nan\n"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_are_refused_quickly_without_expanding(name: str) -> None:
    fmt, text = BOMBS[name]
    tracemalloc.start()
    started = time.monotonic()
    try:
        with time_bound(10.0), pytest.raises(JobFileError) as info:
            _job(text.encode(), fmt)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    took = time.monotonic() - started
    assert took < 5.0, f"{name} took {took:.1f} s"
    assert peak < 64 * 2**20, f"{name} used {peak / 2**20:.0f} MiB: it expanded"
    assert all(p.startswith("job: ") and len(p) > 10 for p in info.value.problems)
    assert not Path("/tmp/labdeck-pwn").exists()


# --- console metric parser -------------------------------------------------------------

CONSOLE_SAMPLES = [
    b"step 100 loss=0.31 acc: 0.9\n",
    b"epoch 3 | step 1200 | loss: 0.0124\n",
    b"Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.302585\n",
    b"1875/1875 [====] - 3s 1ms/step - loss: 0.2950 - accuracy: 0.9150\r\n",
    b"  5%|\xe2\x96\x8c         | 5/100 [00:01<00:19,  4.88it/s, loss=1.2]\r 6%|",
    b"val 0.125 at step=8\n",
]
USER_PATTERNS = ["(?#series=val_loss)val (?P<value>[0-9.]+)",
                 r"(?P<name>\w+)@(?P<step>\d+)=(?P<value>\S+)"]


@fuzz(200, 5000)
@given(mutated(CONSOLE_SAMPLES), st.lists(st.integers(0, 300), max_size=6))
def test_console_lines_in_any_chunking_parse_to_points(data: bytes, cuts: list[int]) -> None:
    patterns = compile_patterns(USER_PATTERNS)

    def run(raw: bytes) -> list[tuple[str, int | None, float]]:
        splitter = ConsoleSplitter()
        points = []
        edges = sorted({0, len(raw), *(c for c in cuts if c < len(raw))})
        for a, b in itertools.pairwise(edges):
            for line in splitter.feed(raw[a:b]):
                points += parse_line(line) + parse_line(line, patterns)
        return points

    points = holds(run, data, ())
    assert all(isinstance(s, str) and s and isinstance(v, float) for s, _st, v in points)


@fuzz(150, 3000)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=3))
def test_user_patterns_compile_or_say_why(patterns: list[str]) -> None:
    result = holds(compile_patterns, patterns, (ValueError,))
    if not isinstance(result, ValueError):
        holds(lambda p: parse_line("loss=1 val 2 x@3=4", p), result, ())


# --- nvidia-smi parser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def smi_lines() -> list[bytes]:
    recorded = (FIXTURES / "smi.txt").read_bytes().splitlines()
    csv = [line for line in recorded if b", GPU-" in line]
    assert csv, f"no CSV lines in {FIXTURES / 'smi.txt'}"
    return [*csv, b"12345, 1024 MiB, GPU-a985d89e-47d5-b413-d80b-3fb47274ecd8"]


@fuzz(200, 5000)
@given(st.data())
def test_mutated_smi_lines_parse_or_raise_value_error(
    smi_lines: list[bytes], data: st.DataObject
) -> None:
    raw = data.draw(mutated(smi_lines))
    text = raw.decode("utf-8", "replace")
    holds(gpu_smi.parse_gpu_line, text, (ValueError,))
    holds(gpu_smi.parse_apps, text, (ValueError,))
    holds(gpu_smi.is_mismatch, text, ())
    for cell in text.split(","):
        holds(gpu_smi.parse_value, cell, (ValueError,))


# --- tfevents reader (agent) --------------------------------------------------------------


@pytest.fixture(scope="module")
def tb_payloads(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The Event payloads of real files from TensorBoard's writer (both styles, hparams)."""
    payloads = []
    for style in ("simple", "tensor"):
        path, _ = write_events(tmp_path_factory.mktemp(style), 20, style=style,
                               tags=("loss", "train/acc"), hparams={"lr": 0.1, "opt": "adam"})
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            payloads.append(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
    assert len(payloads) > 40
    return payloads


def _read_whole(data: bytes) -> tfevents.Batch:
    """Read ``data`` call after call, as the tail does; every call must make progress."""
    start, out = 0, tfevents.Batch(0)
    for _ in range(len(data) + 2):
        batch = tfevents.read_records(lambda at, n: data[at : at + n], start, len(data), "tb/x")
        out.points += batch.points
        out.warnings += batch.warnings
        if batch.end == start:
            break
        assert start < batch.end <= len(data)
        start = batch.end
    out.end = start
    return out


@fuzz(120, 3000)
@given(st.data())
def test_tfevents_with_valid_checksums_over_mutated_events(
    tb_payloads: list[bytes], data: st.DataObject
) -> None:
    """Mutated payloads framed with correct CRCs reach the protobuf decoder and its fast
    path (which runs on runs of >= 16 same-length records)."""
    payload = data.draw(mutated(tb_payloads, max_ops=3))
    count = data.draw(st.sampled_from([1, 17, 40]))
    stream = tfrecord.record(payload) * count + data.draw(st.sampled_from([b"", b"\x00" * 7]))
    batch = holds(_read_whole, stream, ())
    assert all(isinstance(p[0], str) and isinstance(p[3], float) for p in batch.points)
    assert len(batch.points) + len(batch.warnings) >= 0


@fuzz(100, 3000)
@given(st.data())
def test_tfevents_with_corrupt_framing(tb_payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(tfrecord.record(p) for p in tb_payloads[:30])
    stream = data.draw(mutated([stream, stream[:200]]))
    batch = holds(_read_whole, stream, ())
    assert batch.end <= len(stream)


@st.composite
def fast_path_shaped(draw: st.DrawFn) -> bytes:
    """Payloads shaped like the fast path's common event (wall, step, one summary value)
    with random length bytes and varints, so its index arithmetic meets every edge."""
    step = draw(st.sampled_from([b"", b"\x10\x05", b"\x10\xff\xff\xff" + b"\xff" * 8,
                                 b"\x10" + b"\x80" * 12]))
    sizes = draw(st.lists(st.integers(0, 255), min_size=3, max_size=3))
    head = b"\x2a" + bytes([sizes[0]]) + b"\x0a" + bytes([sizes[1]]) + b"\x0a" + bytes([sizes[2]])
    return b"\x09" + b"\x00" * 8 + step + head + draw(st.binary(min_size=0, max_size=40))


@fuzz(150, 4000)
@given(fast_path_shaped(), st.sampled_from([1, 16, 17, 40]))
def test_tfevents_fast_path_never_reads_past_a_record(payload: bytes, count: int) -> None:
    batch = holds(_read_whole, tfrecord.record(payload) * count, ())
    assert batch.end == len(payload) * count + 16 * count


def test_tfevents_tag_running_past_the_last_record_is_a_warning() -> None:
    """Found by the fuzzer: a tag length past the end of the last of >= 16 records raised
    IndexError out of read_records (the tail then retried it for ever)."""
    payload = b"\x09" + b"\x00" * 8 + bytes([0x2A, 0x86, 0x0A, 0x84, 0x0A, 0x7F]) + b"abcdef"
    batch = _read_whole(tfrecord.record(payload) * 40)
    assert batch.end == 40 * (len(payload) + 16) and not batch.points
    assert len(batch.warnings) == 40 and "not a readable event" in batch.warnings[0]
