"""Tailing a run's files by offset and inode (agent/tails.py); the real agent process
answering watch/unwatch is tests/integration/test_agent_stream.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.tb_events import write_events

AGENT_DIR = Path(__file__).resolve().parents[2] / "ssh_backend" / "agent"
sys.path.insert(0, str(AGENT_DIR))
import tails  # noqa: E402

RUN = "tail-run-1"


class Collector:
    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []

    def __call__(self, run_id: str, source: str, inode: int, start: int, end: int,
                 **fields: Any) -> None:
        self.chunks.append(dict(fields, run_id=run_id, source=source, inode=inode,
                                start=start, end=end))

    def of(self, source: str) -> list[dict[str, Any]]:
        return [c for c in self.chunks if c["source"] == source]


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".labdeck" / "runs" / RUN
    folder.mkdir(parents=True)
    return folder


def drain(t: tails.Tails, budget: int = 1 << 30) -> None:
    for _ in range(10_000):
        if not t.poll(budget, now=1e9):
            return
    raise AssertionError("tailing never settled")


def test_console_bytes_exactly_in_bounded_chunks(run_dir: Path) -> None:
    out = Collector()
    t = tails.Tails(out)
    t.watch(RUN, {})
    drain(t)
    assert out.chunks == []  # nothing written yet: the watch waits
    content = os.urandom(700_000)
    (run_dir / "output.log").write_bytes(content)
    drain(t)
    chunks = out.of("output.log")
    assert all(len(c["data"]) <= tails.LOG_CHUNK for c in chunks)
    assert b"".join(c["data"] for c in chunks) == content
    assert [c["start"] for c in chunks] == [0, *[c["end"] for c in chunks[:-1]]]
    with (run_dir / "output.log").open("ab") as fh:
        fh.write(b"more\n")
    drain(t)
    assert out.of("output.log")[-1]["data"] == b"more\n"


def test_resume_at_offsets_and_budget(run_dir: Path) -> None:
    (run_dir / "output.log").write_bytes(b"0123456789" * 100)
    out = Collector()
    t = tails.Tails(out)
    t.watch(RUN, {"output.log": 250})
    assert t.poll(100, now=0.0) == 100
    assert out.chunks[0]["start"] == 250 and out.chunks[0]["data"] == (b"0123456789" * 11)[:100]
    drain(t)
    assert b"".join(c["data"] for c in out.chunks) == (b"0123456789" * 100)[250:]
    t.watch(RUN, {"output.log": 0})  # a repeated watch never moves an open source back
    drain(t)
    assert out.chunks[-1]["end"] == 1000 and len(out.chunks) == 2


def test_metrics_lines_complete_only_with_warnings(run_dir: Path) -> None:
    path = run_dir / "metrics.jsonl"
    good = b'{"t": 10.5, "step": 1, "m": {"loss": 0.5, "acc": NaN, "x": "inf"}}\n'
    bad = b'{"t": 11, "step": 2, "m": {"loss": \n'
    params = b'{"t": 9, "params": {"lr": 0.1, "model/depth": 4}}\n'
    partial = b'{"t": 12, "step": 3, "m": {"loss": 0.25}}'
    path.write_bytes(params + good + bad + partial)
    out = Collector()
    t = tails.Tails(out)
    t.watch(RUN, {})
    drain(t)
    [chunk] = out.of("metrics.jsonl")
    assert (chunk["start"], chunk["end"]) == (0, len(params + good + bad))
    assert chunk["params"] == {"lr": 0.1, "model/depth": 4}
    loss, acc, x = chunk["points"]
    assert loss == ("loss", 1, 10.5, 0.5) and acc[3] != acc[3] and x[3] == float("inf")
    at = len(params + good)
    assert f"metrics.jsonl: line at byte {at} is not valid JSON; skipped" in chunk["warning"]
    with path.open("ab") as fh:
        fh.write(b"\n")
    drain(t)
    last = out.of("metrics.jsonl")[-1]
    assert last["start"] == chunk["end"] and last["points"] == [("loss", 3, 12.0, 0.25)]


def test_rotation_and_truncation_reset_from_zero(run_dir: Path) -> None:
    log = run_dir / "output.log"
    log.write_bytes(b"first file\n")
    out = Collector()
    t = tails.Tails(out)
    t.watch(RUN, {})
    drain(t)
    first_inode = out.chunks[0]["inode"]
    replacement = run_dir / "output.log.new"
    replacement.write_bytes(b"second\n")
    keep = run_dir / "keep"  # hold the old inode so the new file cannot reuse its number
    os.link(log, keep)
    os.replace(replacement, log)
    drain(t)
    chunk = out.chunks[-1]
    assert chunk["reset"] and chunk["start"] == 0 and chunk["data"] == b"second\n"
    assert chunk["inode"] != first_inode
    log.write_bytes(b"")  # truncated in place
    drain(t)
    assert out.chunks[-1]["reset"] and (out.chunks[-1]["start"], out.chunks[-1]["end"]) == (0, 0)


def test_tensorboard_files_are_discovered_with_their_folder(run_dir: Path) -> None:
    out = Collector()
    t = tails.Tails(out)
    t.watch(RUN, {})
    _, train = write_events(run_dir / "tb" / "train", 20, "tensor", ("loss",))
    _, valid = write_events(run_dir / "tb" / "validation", 5, "simple", ("loss",))
    drain(t)
    sources = {c["source"] for c in out.chunks}
    assert len(sources) == 2 and all(s.startswith("tb/") for s in sources)
    series = {p[0] for c in out.chunks for p in c.get("points", [])}
    assert series == {"train/loss", "validation/loss"}
    count = sum(len(c.get("points", [])) for c in out.chunks)
    assert count == len(train) + len(valid)


def test_bad_watch_requests_are_refused(run_dir: Path) -> None:
    t = tails.Tails(Collector())
    for run_id, offsets in [("../x", {}), (RUN, {"../../etc/passwd": 0}),
                            (RUN, {"tb/../x/events.out.tfevents.1": 0}),
                            (RUN, {"output.log": -1}), (RUN, {"output.log": True})]:
        with pytest.raises(ValueError):
            t.watch(run_id, offsets)


