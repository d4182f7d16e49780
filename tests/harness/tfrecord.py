"""TensorBoard event files written with the stdlib only: TFRecord framing (length and
data, each with its masked CRC-32C) and ``simple_value`` scalar events.

Independent of the reader under test (ssh_backend/agent/tfcrc.py, tfevents.py). Tests
import it as ``tests.harness.tfrecord``; the test jobs that run on a host with the plain
``python3`` (tests/integration/capture_job.py, tests/gui/live_capture_job.py) get a copy
of this file beside them and ``import tfrecord``. So: stdlib only, no other harness import.
"""

from __future__ import annotations

import struct

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_TABLE: list[int] = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """The CRC as TFRecord stores it: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, its CRC, the data, the data's CRC."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc(header)) + data
            + struct.pack("<I", masked_crc(data)))


def _varint(n: int) -> bytes:
    out = b""
    while True:
        bits = n & 0x7F
        n >>= 7
        if n:
            out += bytes([bits | 0x80])
        else:
            return out + bytes([bits])


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint((number << 3) | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def scalar_event(tag: str, step: int, wall: float, value: float) -> bytes:
    """A serialized ``Event`` with one ``simple_value`` summary (as PyTorch writes them)."""
    summary_value = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    summary = _field(1, 2, summary_value)
    return (_field(1, 1, struct.pack("<d", wall)) + _field(2, 0, _varint(step))
            + _field(5, 2, summary))


def f32(value: float) -> float:
    """What a float32 field gives back for ``value``."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])
