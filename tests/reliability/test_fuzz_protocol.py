"""Fuzzing the agent protocol on both ends: the app's decoder and stream reader, the
agent's command handler and line reader, run control requests and their replies.

Seeds are real lines from the encoders (ssh_backend/agent/wire.py, protocol.encode_command).
Contract (tests/reliability/fuzz_contract.py): a message or ProtocolError on the app side,
an ``error`` reply on the agent side; never another exception, never a hang. A real agent
process fed garbage, an endless line and deep nesting keeps running and answers a ping.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssh_backend.agent_channel import AgentReader, Heartbeat, StreamEnd
from ssh_backend.protocol import (
    AgentError,
    Hello,
    Message,
    Pong,
    ProtocolError,
    Sample,
    TailChunk,
    decode,
    encode_command,
)
from ssh_backend.runs import RunControlError, _status, decode_reply
from ssh_backend.states import HostState
from tests.harness.agent_process import AgentProcess
from tests.reliability.fuzz_contract import fuzz, holds, mutated

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import agent as agent_main  # noqa: E402
import runctl  # noqa: E402
import wire  # noqa: E402

pytestmark = [pytest.mark.reliability]

GPU = wire.gpu_reading(0, "GPU-a985d89e-47d5-b413-d80b-3fb47274ecd8", 97.0, 40000.0, 81559.0,
                       61.0, 512.3, 700.0, None,
                       [wire.gpu_process(4242, "ana", "python3 train.py", 39000.0)], "run-1")
AGENT_LINES = [
    wire.encode(wire.hello("0123456789abcdef", "gpu1", "b00t", "nvml", "NVML 580.159.04",
                           False, [wire.gpu_static(0, "GPU-a9", "NVIDIA H100 80GB HBM3",
                                                   81559, 700)])),
    wire.encode(wire.sample(7, 1_700_000_000.5, [GPU, wire.empty_reading(
        wire.gpu_static(1, "GPU-b", "H100", None, None))])),
    wire.encode(wire.pong(3)),
    wire.encode(wire.error("GPU reading failed", fatal=False)),
    wire.encode(wire.tail("run-1", "metrics.jsonl", 1234, 0, 57, points=[
        ("loss", 1, 1_700_000_000.0, 0.5), ("acc", None, 1_700_000_001.0, float("nan"))],
        params={"lr": 0.1, "deep": {"x": [1, float("inf")]}}, warning="a line skipped")),
    wire.encode(wire.tail("run-1", "output.log", 99, 10, 20, data=b"step 1 loss=2\n\xff",
                          reset=True)),
]
COMMAND_LINES = [
    encode_command("ping", id=12),
    encode_command("configure", interval=0.5),
    encode_command("watch", run_id="run-0001", offsets={"output.log": 10,
                                                        "tb/train/events.out.tfevents.1": 0}),
    encode_command("unwatch", run_id="run-0001"),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from([10**400, -(10**30), 2**63]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
DEEP = [b"[" * 100_000, b'{"type":"ping","id":' + b"[" * 50_000 + b"\n",
        b'{"type":"pong","id":' + b"9" * 5000 + b"}"]


def test_seeds_decode() -> None:
    kinds = [type(decode(line)) for line in AGENT_LINES]
    assert kinds == [Hello, Sample, Pong, AgentError, TailChunk, TailChunk]


def _decodes(raw: bytes) -> None:
    result = holds(decode, raw, (ProtocolError,))
    assert isinstance(result, ProtocolError | Hello | Sample | Pong | AgentError | TailChunk)


@fuzz(300, 8000)
@given(mutated(AGENT_LINES + COMMAND_LINES + DEEP))
def test_app_decoder_on_mutated_agent_lines(raw: bytes) -> None:
    _decodes(raw)


@fuzz(150, 4000)
@given(st.sampled_from(["hello", "sample", "pong", "error", "tail"]), st.data())
def test_app_decoder_on_real_lines_with_fields_replaced(kind: str, data: st.DataObject) -> None:
    obj = json.loads(next(line for line in AGENT_LINES if json.loads(line)["type"] == kind))
    for key in data.draw(st.lists(st.sampled_from(sorted(obj)), max_size=3)):
        obj[key] = data.draw(JSON)
    _decodes(json.dumps(obj).encode())


@pytest.mark.parametrize("line", [
    b'{"type":"sample","seq":1,"time":' + b"9" * 400 + b',"gpus":[]}',
    b'{"type":"pong","id":' + b"9" * 5000 + b"}",
    b'{"type":"tail","run_id":"r","source":"s","inode":1,"start":0,"end":1,'
    b'"points":[["a",1,' + b"9" * 400 + b",1]]}",
    b'{"type":"tail","run_id":"r","source":"s","inode":1,"start":0,"end":1,'
    b'"points":[["a",1,1,' + b"9" * 400 + b"]]}",
])
def test_huge_integers_are_protocol_errors(line: bytes) -> None:
    """Found by fuzzing: these raised OverflowError / a bare ValueError out of decode()."""
    with pytest.raises(ProtocolError):
        decode(line)


class _Listener:
    def __init__(self) -> None:
        self.messages: list[object] = []

    def on_state(self, host: str, state: HostState, detail: str) -> None:
        self.messages.append(state)

    def on_hello(self, host: str, hello: Hello) -> None:
        self.messages.append(hello)

    def on_sample(self, host: str, sample: Sample) -> None:
        self.messages.append(sample)

    def on_tail(self, host: str, chunk: TailChunk) -> None:
        self.messages.append(chunk)


class _Stream:
    """The agent's stdout as given chunks, then end of stream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.written: list[bytes] = []

    def read(self, timeout: float) -> bytes | None:
        return self.chunks.pop(0) if self.chunks else b""

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def stderr_text(self) -> str:
        return ""

    def exit_status(self, timeout: float) -> int | None:
        return 0

    def close(self) -> None:
        pass


@fuzz(150, 4000)
@given(st.lists(mutated(AGENT_LINES, max_ops=2), min_size=1, max_size=6),
       st.lists(st.integers(1, 400), max_size=8), st.booleans())
def test_app_stream_reader_ends_cleanly_on_any_byte_stream(
    lines: list[bytes], cuts: list[int], hello_first: bool
) -> None:
    raw = (AGENT_LINES[0] if hello_first else b"") + b"".join(lines)
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(raw[pos : pos + cut])
        pos += cut
    chunks.append(raw[pos:])
    reader = AgentReader("h", _Listener(), lambda state, detail: None,
                         Heartbeat(5.0, 10.0, 30.0), threading.Event(), threading.Event())
    end = holds(reader.run, _Stream([c for c in chunks if c]), ())
    assert isinstance(end, StreamEnd) and end.reason in ("eof", "failed")


def test_app_stream_reader_refuses_an_endless_line() -> None:
    reader = AgentReader("h", _Listener(), lambda state, detail: None,
                         Heartbeat(5.0, 10.0, 30.0), threading.Event(), threading.Event())
    end = reader.run(_Stream([AGENT_LINES[0]] + [b"x" * 2**20] * 6))
    assert end.reason == "failed" and "over" in end.detail and end.got_hello


# --- agent side -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def host_home(tmp_path_factory: pytest.TempPathFactory) -> object:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


def _agent_replies(*raws: bytes) -> list[Message]:
    out = io.BytesIO()
    agent = agent_main.Agent(agent_main.parse_args(["--backend", "none"]), io.BytesIO(), out)
    for raw in raws:
        holds(lambda r: agent.handle(r, agent_main.NoBackend("off")), raw, ())
    return [decode(line) for line in out.getvalue().splitlines()]


@fuzz(300, 8000)
@given(mutated(COMMAND_LINES + DEEP) | st.builds(
    lambda kind, extra: json.dumps({"type": kind, **extra}).encode(),
    st.sampled_from(["ping", "configure", "watch", "unwatch", "shutdown", "x"]),
    st.dictionaries(st.sampled_from(["id", "interval", "run_id", "offsets"]), JSON)))
def test_agent_command_handler_answers_or_reports(host_home: object, raw: bytes) -> None:
    for reply in _agent_replies(raw.strip()):
        assert isinstance(reply, Pong | AgentError)
        if isinstance(reply, AgentError):
            assert reply.message.startswith("bad command ignored: ") and not reply.fatal


@pytest.mark.parametrize("raw", [
    b"[" * 100_000, b'{"type":"unwatch","run_id":{"a":1}}',
    b'{"type":"configure","interval":' + b"9" * 400 + b"}",
    b'{"type":"unwatch","run_id":[1]}',
])
def test_agent_command_handler_regressions(host_home: object, raw: bytes) -> None:
    """Found by fuzzing: RecursionError / TypeError / OverflowError escaped handle() and
    ended the agent's command reader, leaving it deaf to every later command."""
    [reply] = _agent_replies(COMMAND_LINES[2].strip(), raw)  # a run is watched, then raw
    assert isinstance(reply, AgentError) and "bad command ignored" in reply.message


@fuzz(100, 3000)
@given(st.lists(mutated(COMMAND_LINES, max_ops=2), min_size=2, max_size=5))
def test_agent_command_sequences(host_home: object, raws: list[bytes]) -> None:
    for reply in _agent_replies(COMMAND_LINES[2].strip(), *(r.strip() for r in raws)):
        assert isinstance(reply, Pong | AgentError)


def _runctl_holds(raw: bytes) -> None:
    reply = holds(runctl.handle, raw, ())
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert str(reply.get("error") or reply.get("refused") or "").strip()
    json.dumps(reply)  # what main() prints must be JSON


@fuzz(200, 5000)
@given(mutated([b'{"op":"reconcile","run_ids":["run-0001","run-0002"]}',
                b'{"op":"cancel","run_id":"run-0001","grace_s":5}', *DEEP])
       | st.builds(lambda op, extra: json.dumps({"op": op, **extra}).encode(),
                   st.sampled_from(["reconcile", "cancel", "nope"]),
                   st.dictionaries(st.sampled_from(["run_id", "run_ids", "grace_s"]), JSON
                                   | st.just("run-0001\n") | st.just(["abcd\n"]))))
def test_runctl_requests_get_a_json_reply(host_home: object, raw: bytes) -> None:
    _runctl_holds(raw)


@fuzz(200, 5000)
@given(JSON, JSON)
def test_runctl_launch_validation_says_bad_request(job: object, gpus: object) -> None:
    """The checks a launch passes before anything touches the disk."""
    holds(runctl.check_job, job, (runctl.BadRequest,))
    holds(runctl.check_gpus, {"gpu_indices": gpus, "gpu_uuids": job}, (runctl.BadRequest,))


def test_run_ids_with_a_trailing_newline_are_refused(host_home: object) -> None:
    reply = runctl.handle(b'{"op":"reconcile","run_ids":["abcd\\n"]}')
    assert reply["ok"] is False and "not a valid run id" in reply["error"]


@fuzz(200, 5000)
@given(mutated([b'{"ok": true, "status": {"kind": "running", "pid": 7, "start_time": 1.5}}',
                b'{"ok": false, "refused": "a GPU lease is held"}', *DEEP]),
       st.sampled_from([0, 1, None]))
def test_app_decodes_runctl_replies_or_says_run_control_failed(raw: bytes, code: int) -> None:
    reply = holds(lambda r: decode_reply("h", code, r, ""), raw, (RunControlError,))
    if isinstance(reply, dict) and "status" in reply:
        holds(lambda s: _status("run-0001", s), reply.get("status"), (RunControlError,))


# --- a real agent process -------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


@pytest.mark.timeout(60)
def test_real_agent_survives_garbage_and_an_endless_line() -> None:
    with AgentProcess("--backend", "none", "--interval", "0.2") as agent:
        agent.next(Hello)
        agent.send(bytes(b for b in range(256) if b != 10) * 64 + b"\n")  # binary garbage
        agent.send(b"[" * 200_000 + b"\n")  # nesting past the recursion limit
        chunk = b"\xff\x00garbage" * (2**20 // 9)
        for _ in range(48):  # 48 MiB without a newline
            agent.send(chunk)
        rss = _rss_kib(agent.proc.pid)
        agent.send(b"\n" + encode_command("ping", id=77))
        # One error per bad line, in order, then the answer to the ping after them.
        errors = [agent.next(AgentError, timeout=15)[1].message for _ in range(3)]
        _, pong = agent.next(Pong, timeout=15)
        assert pong.id == 77
        assert agent.proc.poll() is None
        assert all(e.startswith("bad command ignored") for e in errors), errors
        assert "over 1048576 bytes" in errors[2], errors
        # The endless line was dropped as it came, never held whole in memory.
        assert rss < 40 * 1024, f"agent RSS {rss} KiB while reading a 48 MiB line"
        agent.command("shutdown")
        assert agent.wait(10) == 0
