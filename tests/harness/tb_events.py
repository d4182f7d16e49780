"""Real TensorBoard event files for tests, written with TensorBoard's own writer.

Two styles: PyTorch's SummaryWriter (``simple_value``) and TF2's ``tf.summary.scalar``
(a scalar tensor with the "scalars" plugin metadata), plus the hparams plugin's
session start. Returns what was written so tests compare against it exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

Point = tuple[str, int, float, float]  # series, step, wall time, value


def simple_event(tag: str, step: int, wall: float, value: float) -> event_pb2.Event:
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=wall, step=step, summary=summary)


def tensor_event(tag: str, step: int, wall: float, value: float) -> event_pb2.Event:
    return event_pb2.Event(wall_time=wall, step=step, summary=scalar_summary.scalar_pb(tag, value))


def hparams_event(params: dict[str, Any], wall: float) -> event_pb2.Event:
    return event_pb2.Event(wall_time=wall, summary=hparams_summary.hparams_pb(params))


def as_float32(value: float) -> float:
    """What a float32 field gives back for ``value``."""
    import struct

    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def write_events(
    folder: Path,
    steps: int,
    style: str = "simple",
    tags: tuple[str, ...] = ("loss",),
    hparams: dict[str, Any] | None = None,
    wall0: float = 1_700_000_000.0,
) -> tuple[Path, list[Point]]:
    """An event file in ``folder`` with ``steps`` points per tag; (path, expected points
    in file order, values as float32 gives them back)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(folder), max_queue_size=100_000, flush_secs=3600)
    expected: list[Point] = []
    if hparams:
        writer.add_event(hparams_event(hparams, wall0))
    make = simple_event if style == "simple" else tensor_event
    for step in range(steps):
        for k, tag in enumerate(tags):
            value = math.sin(step / 7.0 + k) * 10.0 ** (k - 1) + step * 1e-3
            if step == 3 and k == 0:
                value = float("nan")
            wall = wall0 + step * 0.5 + k * 0.01
            writer.add_event(make(tag, step, wall, value))
            expected.append((tag, step, wall, as_float32(value)))
    writer.close()
    files = sorted(folder.glob("events.out.tfevents.*"))
    return files[-1], expected
