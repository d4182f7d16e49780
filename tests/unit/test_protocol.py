"""The app/agent JSON-lines protocol: round trips, clear errors, and fuzzing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssh_backend import protocol
from ssh_backend.protocol import (
    AgentError,
    GpuReading,
    Hello,
    Pong,
    ProtocolError,
    Sample,
    decode,
    encode_command,
)

AGENT_DIR = Path(__file__).resolve().parents[2] / "ssh_backend" / "agent"
sys.path.insert(0, str(AGENT_DIR))
import wire  # noqa: E402


def line(message: dict) -> bytes:
    return wire.encode(message)


def test_agent_speaks_the_app_protocol_version() -> None:
    assert wire.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION


def test_hello_round_trip() -> None:
    static = wire.gpu_static(0, "GPU-a985d89e", "NVIDIA H100 80GB HBM3", 81559, 700.0)
    msg = decode(line(wire.hello("abc", "vm", "boot-1", "nvml", "NVML 13", False, [static])))
    assert isinstance(msg, Hello)
    assert (msg.agent_version, msg.hostname, msg.boot_id, msg.backend) == (
        "abc", "vm", "boot-1", "nvml")
    assert msg.gpus[0].memory_total_mib == 81559.0
    assert msg.gpus[0].power_limit_w == 700.0
    assert msg.needs_reboot is False and msg.simulated is False


def test_needs_reboot_hello_has_no_gpus() -> None:
    msg = decode(line(wire.hello("v", "h", "b", "smi", "mismatch", False, [], True)))
    assert isinstance(msg, Hello) and msg.needs_reboot and msg.gpus == ()


def test_sample_round_trip_keeps_missing_values_missing() -> None:
    proc = wire.gpu_process(446, "root", "python3 train.py", 1032.0)
    reading = wire.gpu_reading(0, "GPU-x", 100, 3760.8, 81559, 70, 648.8, 700, None, [proc])
    msg = decode(line(wire.sample(3, 1700000000.5, [reading])))
    assert isinstance(msg, Sample) and msg.seq == 3 and msg.time == 1700000000.5
    gpu = msg.gpus[0]
    assert isinstance(gpu, GpuReading)
    assert gpu.fan_pct is None
    assert gpu.util_pct == 100.0 and gpu.temp_c == 70.0
    assert gpu.processes[0].pid == 446 and gpu.processes[0].mem_mib == 1032.0


def test_non_finite_readings_become_missing_on_the_agent_side() -> None:
    reading = wire.gpu_reading(0, "GPU-x", float("nan"), float("inf"), "12", None)
    msg = decode(line(wire.sample(0, 1.0, [reading])))
    assert isinstance(msg, Sample)
    assert msg.gpus[0].util_pct is None and msg.gpus[0].mem_used_mib is None
    assert msg.gpus[0].mem_total_mib == 12.0


def test_pong_and_error_round_trip() -> None:
    assert decode(line(wire.pong(9))) == Pong(id=9)
    assert decode(line(wire.error("boom", fatal=True))) == AgentError("boom", True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type":"pong"}', "missing field 'id'"),
        ('{"type":"pong","id":"1"}', "must be an integer"),
        ('{"type":"pong","id":true}', "must be an integer"),
        ('{"type":"sample","seq":1,"time":NaN,"gpus":[]}', "must be finite"),
        ('{"type":"sample","seq":1,"time":1,"gpus":{}}', "list of objects"),
        ('{"type":"nope"}', "unknown message type"),
        ("[1,2]", "must be a JSON object"),
        ("{", "not JSON"),
        ('{"type":"error","message":"x","fatal":"yes"}', "true or false"),
    ],
)
def test_malformed_lines_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode(text)


def test_wrong_protocol_version_is_refused() -> None:
    hello = wire.hello("v", "h", "b", "none", "", False, [])
    hello["protocol"] = 2
    with pytest.raises(ProtocolError, match="protocol 2"):
        decode(json.dumps(hello))


def test_unknown_backend_is_refused() -> None:
    hello = wire.hello("v", "h", "b", "cuda", "", False, [])
    with pytest.raises(ProtocolError, match="unknown GPU backend"):
        decode(json.dumps(hello))


def test_oversize_and_non_utf8_are_refused() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(b" " * (protocol.MAX_LINE_BYTES + 1))
    with pytest.raises(ProtocolError, match="not UTF-8"):
        decode(b'{"type":"error","message":"\xff"}')


def test_encode_command_is_one_json_line() -> None:
    raw = encode_command("configure", interval=0.5)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert json.loads(raw) == {"type": "configure", "interval": 0.5}
    with pytest.raises(ValueError, match="unknown command"):
        encode_command("reboot")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "sample", "pong", "error", "x"])},
    optional={
        "protocol": json_values, "seq": json_values, "time": json_values,
        "gpus": json_values, "id": json_values, "message": json_values,
        "backend": st.sampled_from(["nvml", "smi", "sim", "none", "?"]),
        "agent_version": json_values, "hostname": json_values, "boot_id": json_values,
        "backend_detail": json_values, "simulated": json_values, "fatal": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), message_like.map(lambda m: json.dumps(m).encode())))
def test_decode_raises_only_protocol_errors(raw: bytes) -> None:
    try:
        decode(raw)
    except ProtocolError:
        pass
