"""The agent's TensorBoard event reader against files written by TensorBoard itself:
PyTorch-style simple values, TF2-style scalar tensors, hparams; partial, corrupt and
random input only ever gives warnings."""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.summary.writer.record_writer import masked_crc32c

from tests.harness import tfrecord
from tests.harness.tb_events import Point, write_events

AGENT_DIR = Path(__file__).resolve().parents[2] / "ssh_backend" / "agent"
sys.path.insert(0, str(AGENT_DIR))
import tfcrc  # noqa: E402
import tfevents  # noqa: E402


def read_all(data: bytes, label: str = "tb/x", prefix: str = "", **kw: Any) -> tfevents.Batch:
    """Read ``data`` to its end the way the tail does: call after call from each end."""
    out = tfevents.Batch(0)
    start = 0
    for _ in range(len(data) + 2):
        batch = tfevents.read_records(lambda at, n: data[at:at + n], start, len(data), label,
                                      prefix, **kw)
        out.points += batch.points
        out.params.update(batch.params)
        out.warnings += batch.warnings
        if batch.end == start:
            break
        assert batch.end > start
        start = batch.end
    out.end = start
    return out


def same(points: list[list[Any]], expected: list[Point], prefix: str = "") -> bool:
    assert len(points) == len(expected)
    for got, want in zip(points, expected, strict=True):
        assert got[:3] == [prefix + want[0], want[1], want[2]]
        assert got[3] == want[3] or (math.isnan(got[3]) and math.isnan(want[3]))
    return True


def test_crc32c_matches_the_standard_and_tensorboard() -> None:
    assert tfcrc.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tfcrc.crc32c(b"") == 0
    for n in (1, 7, 8, 9, 15, 16, 63, 1000):
        data = bytes(range(256))[:n] * 3
        assert tfcrc.masked_crc(data) == masked_crc32c(data)


@pytest.mark.parametrize("style", ["simple", "tensor"])
def test_reads_every_scalar_and_the_hparams(tmp_path: Path, style: str) -> None:
    hparams = {"lr": 0.01, "optimizer": "adam", "batch_norm": True}
    path, expected = write_events(tmp_path, 300, style, ("loss", "acc"), hparams=hparams)
    batch = read_all(path.read_bytes())
    assert batch.warnings == []
    assert batch.end == path.stat().st_size
    assert same(batch.points, expected)
    assert batch.params == hparams


def test_series_prefix_and_step_zero(tmp_path: Path) -> None:
    path, expected = write_events(tmp_path, 5, "simple")
    batch = read_all(path.read_bytes(), prefix="train/")
    assert same(batch.points, expected, "train/")
    assert batch.points[0][1] == 0  # proto3 leaves step 0 out of the bytes


def _tensor(dtype: int, dims: list[int], **values: Any) -> event_pb2.Event:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)
    value = summary_pb2.Summary.Value(tag="t", tensor=tensor)
    return event_pb2.Event(wall_time=2.0, step=-3, summary=summary_pb2.Summary(value=[value]))


def _record(event: event_pb2.Event) -> bytes:
    return tfrecord.record(event.SerializeToString())


@pytest.mark.parametrize(("event", "value"), [
    (_tensor(2, [], double_val=[0.125]), 0.125),
    (_tensor(1, [1], tensor_content=struct.pack("<f", 1.5)), 1.5),
    (_tensor(2, [], tensor_content=struct.pack("<d", -2.25)), -2.25),
    (_tensor(9, [], int64_val=[-7]), -7.0),
    (_tensor(3, [], int_val=[42]), 42.0),
    (_tensor(19, [], half_val=[0x3C00]), 1.0),
    (_tensor(14, [], tensor_content=struct.pack("<f", 3.0)[2:]), 3.0),
    (_tensor(1, [2], float_val=[1.0, 2.0]), None),  # not a scalar
    (_tensor(7, [], string_val=[b"text"]), None),  # a string
])
def test_scalar_tensors_of_every_numeric_kind(event: event_pb2.Event, value: float | None) -> None:
    batch = read_all(_record(event))
    assert batch.warnings == []
    assert batch.points == ([] if value is None else [["t", -3, 2.0, value]])


def test_partial_file_gives_complete_records_only(tmp_path: Path) -> None:
    path, expected = write_events(tmp_path, 40, "tensor", ("loss",))
    data = path.read_bytes()
    boundaries = []
    for cut in range(0, len(data) + 1, 7):
        batch = tfevents.read_records(lambda at, n, d=data[:cut]: d[at:at + n], 0, cut, "f",
                                      max_bytes=1 << 20)
        assert batch.warnings == []
        assert batch.end <= cut
        boundaries.append(batch.end)
        assert same(batch.points, expected[:len(batch.points)])
    assert boundaries == sorted(boundaries)


def test_flipped_bit_in_data_is_reported_and_skipped(tmp_path: Path) -> None:
    path, expected = write_events(tmp_path, 20, "simple", ("loss",))
    data = bytearray(path.read_bytes())
    records = []
    pos = 0
    while pos < len(data):
        length = struct.unpack_from("<Q", data, pos)[0]
        records.append(pos)
        pos += 16 + length
    victim = records[6]
    data[victim + 14] ^= 0x10  # inside the event bytes
    batch = read_all(bytes(data), label="tb/events.out.tfevents.1")
    assert len(batch.warnings) == 1
    assert f"tb/events.out.tfevents.1: record at byte {victim} fails its checksum" in (
        batch.warnings[0])
    # record 0 is the file version event; record 6 carries the 6th point (index 5)
    assert same(batch.points, expected[:5] + expected[6:])


def _offsets(data: bytes | bytearray) -> list[int]:
    records = []
    pos = 0
    while pos < len(data):
        records.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return records


def test_flipped_bits_in_values_fail_the_bulk_check(tmp_path: Path) -> None:
    path, expected = write_events(tmp_path, 200, "simple", ("loss", "acc"))
    data = bytearray(path.read_bytes())
    records = _offsets(data)
    victims = {records[11]: 0x01, records[50]: 0x80, records[51]: 0x08, records[300]: 0x40}
    for at, bit in victims.items():
        value_at = at + 12 + struct.unpack_from("<Q", data, at)[0] - 4
        data[value_at + bit % 4] ^= bit  # a bit of the float value
    footer = records[120] + 12 + struct.unpack_from("<Q", data, records[120])[0]
    data[footer + 2] ^= 0x04  # a bit of the stored checksum itself
    damaged = set(victims) | {records[120]}
    # The checksums of all but the file version record and the two step-0 records (each
    # a length of its own) are checked in bulk, and exactly the damaged records fail.
    good, stop = tfcrc.checked_run(bytes(data), 0, len(data), 10**6, True)
    assert stop == len(data)
    assert set(records) - set(good) == damaged | set(records[:3])
    batch = read_all(bytes(data), label="tb/f")
    assert batch.warnings == [f"tb/f: record at byte {at} fails its checksum; skipped"
                              for at in sorted(damaged)]
    lost = {records.index(at) - 1 for at in damaged}  # record k + 1 holds point k
    assert same(batch.points, [p for k, p in enumerate(expected) if k not in lost])


@pytest.mark.parametrize("byte", [5, 9])  # a high byte of the length; the length's CRC
def test_corrupt_header_inside_a_bulk_run(tmp_path: Path, byte: int) -> None:
    path, expected = write_events(tmp_path, 100, "simple", ("loss",))
    data = bytearray(path.read_bytes())
    victim = _offsets(data)[60]
    data[victim + byte] ^= 0x20
    batch = read_all(bytes(data))
    assert len(batch.warnings) == 1 and f"corrupt record header at byte {victim}" in (
        batch.warnings[0])
    assert same(batch.points, expected[:59] + expected[60:])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 40), st.data())
def test_bulk_check_agrees_with_one_by_one(length: int, rows: int, data: st.DataObject) -> None:
    body = data.draw(st.binary(min_size=length * rows, max_size=length * rows))
    matrix = bytearray()
    for row in range(rows):
        chunk = body[row * length:(row + 1) * length]
        matrix += b"pad" + chunk + struct.pack("<I", masked_crc32c(chunk))
    stride = length + 7
    damaged = set()
    for _ in range(data.draw(st.integers(0, 4))):
        row = data.draw(st.integers(0, rows - 1))
        matrix[row * stride + data.draw(st.integers(3, stride - 1))] ^= 1 << data.draw(
            st.integers(0, 7))
        damaged.add(row)
    failing = tfcrc.failing(bytes(matrix), stride, 3, length)
    one_by_one = [row for row in range(rows) if tfcrc.masked_crc(
        matrix[row * stride + 3:row * stride + 3 + length]) != struct.unpack_from(
        "<I", matrix, row * stride + 3 + length)[0]]
    assert failing == one_by_one
    assert set(failing) <= damaged  # a flip can undo another on the same bit


def test_corrupt_header_resyncs_at_the_next_record(tmp_path: Path) -> None:
    path, expected = write_events(tmp_path, 20, "simple", ("loss",))
    data = bytearray(path.read_bytes())
    second = 16 + struct.unpack_from("<Q", data, 0)[0]
    data[second + 2] ^= 0xFF  # the length of the first point's record
    batch = read_all(bytes(data))
    assert len(batch.warnings) == 1 and f"corrupt record header at byte {second}" in (
        batch.warnings[0])
    assert same(batch.points, expected[1:])


def test_big_records_beyond_the_window(tmp_path: Path) -> None:
    big = summary_pb2.Summary.Value(tag="blob", tensor=tensor_pb2.TensorProto(
        dtype=7, string_val=[b"x" * 300_000]))
    blob = _record(event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[big])))
    path, expected = write_events(tmp_path, 3, "simple", ("loss",))
    data = blob + path.read_bytes() + blob
    batch = read_all(data, max_bytes=64 * 1024)
    assert batch.warnings == [] and batch.end == len(data)
    assert same(batch.points, expected)


@pytest.mark.parametrize(("steps", "max_points"), [(50, 10), (400, 300)])
def test_max_points_stops_at_a_record_boundary(tmp_path: Path, steps: int,
                                               max_points: int) -> None:
    path, expected = write_events(tmp_path, steps, "simple", ("a", "b"))
    data = path.read_bytes()
    first = tfevents.read_records(lambda at, n: data[at:at + n], 0, len(data), "f",
                                  max_points=max_points)
    assert len(first.points) == max_points
    rest = read_all(data[first.end:])
    assert same(first.points + rest.points, expected)


@pytest.fixture(scope="module")
def real_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path, _ = write_events(tmp_path_factory.mktemp("tb"), 30, "tensor", ("loss", "acc"),
                           hparams={"lr": 0.1})
    return path.read_bytes()


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_only_warn(data: bytes) -> None:
    batch = read_all(data)
    assert batch.end <= len(data)


@FUZZ
@given(st.data())
def test_damaged_real_files_only_warn(real_file: bytes, data: st.DataObject) -> None:
    damaged = bytearray(real_file[:data.draw(st.integers(0, len(real_file)))])
    for _ in range(data.draw(st.integers(0, 8))):
        if damaged:
            at = data.draw(st.integers(0, len(damaged) - 1))
            damaged[at] ^= 1 << data.draw(st.integers(0, 7))
    batch = read_all(bytes(damaged))
    assert batch.end <= len(damaged)
    for point in batch.points:
        assert isinstance(point[0], str) and isinstance(point[3], float)


def test_tensorboardx_files_read_as_tensorboard_reads_them(tmp_path: Path) -> None:
    """A real tensorboardX SummaryWriter (what many scripts use): NaN, infinities and
    steps beyond 2**31 come out exactly as TensorBoard's own EventAccumulator reads them."""
    tensorboardx = pytest.importorskip("tensorboardX")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = tensorboardx.SummaryWriter(str(tmp_path))
    values = [0.5, float("nan"), float("inf"), -float("inf"), 1e-30, 3.25]
    for i, value in enumerate(values):
        writer.add_scalar("loss", value, 2**31 + i * 1000)
        writer.add_scalar("train/acc", i / 10, i)
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    batch = read_all(path.read_bytes())
    assert batch.warnings == []
    ours = sorted((p[0], p[1], p[3]) for p in batch.points)
    accumulator = EventAccumulator(str(path))
    accumulator.Reload()
    theirs = sorted((tag, e.step, e.value) for tag in accumulator.Tags()["scalars"]
                    for e in accumulator.Scalars(tag))
    assert len(ours) == len(theirs) == 2 * len(values)
    for (tag, step, value), (t_tag, t_step, t_value) in zip(ours, theirs, strict=True):
        assert (tag, step) == (t_tag, t_step)
        assert value == t_value or (math.isnan(value) and math.isnan(t_value))
