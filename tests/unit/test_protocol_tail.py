"""The tail message and the watch/unwatch commands on the wire, and the session's book
of watches that makes a reconnect resume exactly after the last delivered chunk."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from ssh_backend.protocol import MetricPoint, ProtocolError, TailChunk, decode, encode_command
from ssh_backend.watches import WatchBook

AGENT_DIR = Path(__file__).resolve().parents[2] / "ssh_backend" / "agent"
sys.path.insert(0, str(AGENT_DIR))
import wire  # noqa: E402


def test_agent_tail_decodes_into_a_chunk() -> None:
    points = [("loss", 3, 12.5, 0.25), ("acc", None, 12.5, math.nan),
              ("g", 4, 13.0, math.inf), ("h", 5, 13.0, -math.inf)]
    line = wire.encode(wire.tail("run-0001", "metrics.jsonl", 77, 10, 90, data=b"\x00\xffab",
                                 points=points, params={"lr": 0.1, "bad": math.nan},
                                 warning="w"))
    chunk = decode(line)
    assert isinstance(chunk, TailChunk)
    assert (chunk.run_id, chunk.source, chunk.inode, chunk.start, chunk.end) == (
        "run-0001", "metrics.jsonl", 77, 10, 90)
    assert chunk.data == b"\x00\xffab" and chunk.warning == "w" and not chunk.reset
    assert chunk.params == {"lr": 0.1, "bad": "nan"}
    assert chunk.points[0] == MetricPoint("loss", 3, 12.5, 0.25)
    assert math.isnan(chunk.points[1].value) and chunk.points[1].step is None
    assert chunk.points[2].value == math.inf and chunk.points[3].value == -math.inf


def test_minimal_tail_and_reset() -> None:
    chunk = decode(wire.encode(wire.tail("run-0001", "output.log", 1, 0, 0, reset=True)))
    assert isinstance(chunk, TailChunk)
    assert chunk.reset and chunk.data == b"" and chunk.points == () and chunk.params == {}


BASE = {"type": "tail", "run_id": "r", "source": "output.log", "inode": 1, "start": 0,
        "end": 1}


@pytest.mark.parametrize(("change", "why"), [
    ({"start": 5}, "byte range"),
    ({"inode": -1}, "inode"),
    ({"data": "***"}, "base64"),
    ({"points": [["a", 1, 1.0]]}, "point must be"),
    ({"points": [["a", 1.5, 1.0, 2.0]]}, "step"),
    ({"points": [["a", 1, "x", 2.0]]}, "wall time"),
    ({"points": [["a", 1, 1.0, "NaN!"]]}, "value"),
    ({"points": [["", 1, 1.0, 1.0]]}, "series"),
    ({"params": [1]}, "params"),
    ({"end": None}, "end"),
])
def test_bad_tails_are_refused_with_a_reason(change: dict[str, object], why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode(json.dumps({**BASE, **change}))


def test_watch_commands() -> None:
    line = encode_command("watch", run_id="run-0001", offsets={"output.log": 5})
    assert json.loads(line) == {"type": "watch", "run_id": "run-0001",
                                "offsets": {"output.log": 5}}
    assert json.loads(encode_command("unwatch", run_id="x")) == {"type": "unwatch",
                                                                 "run_id": "x"}
    with pytest.raises(ValueError):
        encode_command("tail")


def chunk(source: str, start: int, end: int, reset: bool = False) -> TailChunk:
    return TailChunk("run-0001", source, 1, start, end, reset=reset)


def test_watch_book_queues_then_resends_after_each_reconnect() -> None:
    book = WatchBook()
    book.watch("run-0001", {"output.log": 10})
    assert book.take_pending() == []  # not connected: nothing to send yet
    [first] = book.connected()
    assert json.loads(first)["offsets"] == {"output.log": 10}
    book.delivered(chunk("output.log", 10, 50))
    book.delivered(chunk("tb/events.out.tfevents.1", 0, 99))
    book.watch("run-0001", {"output.log": 30, "metrics.jsonl": 7})  # committed lags behind
    [queued] = book.take_pending()
    assert json.loads(queued)["offsets"] == {"output.log": 50, "metrics.jsonl": 7,
                                             "tb/events.out.tfevents.1": 99}
    book.disconnected()
    book.delivered(chunk("output.log", 0, 4, reset=True))
    [again] = book.connected()
    assert json.loads(again)["offsets"]["output.log"] == 4
    book.unwatch("run-0001")
    assert [json.loads(c)["type"] for c in book.take_pending()] == ["unwatch"]
    book.delivered(chunk("output.log", 4, 8))  # late chunk of an unwatched run
    assert book.offsets("run-0001") == {} and book.connected() == []


def test_watch_book_refuses_bad_input() -> None:
    book = WatchBook()
    with pytest.raises(ValueError):
        book.watch("../etc", {})
    with pytest.raises(ValueError):
        book.watch("run-0001", {"output.log": -3})
