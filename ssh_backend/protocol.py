"""The versioned JSON-lines messages between the app and the agent on a host.

One JSON object per line, UTF-8, ``type`` says which message it is. The agent speaks
first with ``hello``; the app refuses an agent whose protocol version it does not know.
Decoding validates every field: a malformed line raises :class:`ProtocolError` with a
message that says what was wrong, never a bare ``KeyError``.

agent → app: ``hello``, ``sample``, ``pong``, ``error``, ``tail``
app → agent: ``configure`` (interval), ``ping``, ``shutdown``, ``watch``, ``unwatch``

``watch {"run_id", "offsets": {source: byte offset}}`` asks the agent to tail a run's
``output.log``, ``metrics.jsonl`` and every ``tb/**/events.out.tfevents.*`` from those
offsets (a missing source starts at 0); ``unwatch {"run_id"}`` stops it. A ``tail``
carries console bytes as base64 and points as ``[series, step|null, wall, value]`` with
non-finite values spelled "nan" / "inf" / "-inf".

Decoding also bounds what a host may announce (``ssh_backend.limits``): the first
``MAX_GPUS`` GPUs, the first ``MAX_PROCESSES`` processes of each, clipped text without
control characters, a bounded number of points and parameters per chunk. What was left
out is said in plain words: ``Hello.cut`` / ``Sample.cut``, or the chunk's ``warning``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ssh_backend.limits import (
    MAX_COMMAND_CHARS,
    MAX_DETAIL_CHARS,
    MAX_GPUS,
    MAX_LINE_BYTES,
    MAX_NAME_CHARS,
    MAX_POINTS_PER_CHUNK,
    MAX_PROCESSES,
    MAX_SOURCE_CHARS,
    bound_params,
    clean_text,
    cut_note,
    no_controls,
)

PROTOCOL_VERSION = 1

BACKENDS = ("nvml", "smi", "sim", "none")


class ProtocolError(ValueError):
    """A line from the peer is not a valid message of this protocol version."""


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    user: str | None
    command: str | None
    mem_mib: float | None


@dataclass(frozen=True, slots=True)
class GpuStatic:
    """Facts about a GPU that do not change while the agent runs."""

    index: int
    uuid: str
    name: str
    memory_total_mib: float | None
    power_limit_w: float | None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One reading of one GPU. ``None`` means "not supported / not available", never 0."""

    index: int
    uuid: str
    util_pct: float | None
    mem_used_mib: float | None
    mem_total_mib: float | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None
    fan_pct: float | None
    processes: tuple[GpuProcess, ...] = ()
    # The run id holding this GPU's Labdeck lease (a run's wrapper is on it), or None.
    leased_by: str | None = None


@dataclass(frozen=True, slots=True)
class Hello:
    protocol: int
    agent_version: str
    hostname: str
    boot_id: str
    backend: str
    backend_detail: str
    simulated: bool
    gpus: tuple[GpuStatic, ...]
    # Set when the host cannot report GPUs for a reason the user must fix (driver mismatch).
    needs_reboot: bool = False
    # What decoding left out (``ssh_backend.limits``), in plain words, or ''.
    cut: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    seq: int
    time: float
    gpus: tuple[GpuReading, ...]
    # What decoding left out (``ssh_backend.limits``), in plain words, or ''.
    cut: str = ""


@dataclass(frozen=True, slots=True)
class Pong:
    id: int


@dataclass(frozen=True, slots=True)
class AgentError:
    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of one series. ``step`` is None when the source gave none."""

    series: str
    step: int | None
    wall_time: float
    value: float


@dataclass(frozen=True, slots=True)
class TailChunk:
    """New content of one file of a run's folder on a host, from byte ``start`` to ``end``.

    ``source`` is ``output.log``, ``metrics.jsonl`` or ``tb/<relative path>``. For the
    console, ``data`` holds the raw bytes; for metric files, ``points`` holds what the
    agent parsed from complete records in [start, end). ``reset`` means the file was
    truncated or replaced (new inode): offsets restart at ``start``. The app stores the
    chunk and ``end`` as the new offset in one transaction.
    """

    run_id: str
    source: str
    inode: int
    start: int
    end: int
    data: bytes = b""
    points: tuple[MetricPoint, ...] = ()
    # Hyper-parameters found in this chunk (labdeck.init config, TensorBoard hparams).
    params: dict[str, Any] = field(default_factory=dict)
    reset: bool = False
    # A readable note for the user (a corrupt record skipped, a file unreadable).
    warning: str = ""


Message = Hello | Sample | Pong | AgentError | TailChunk


@dataclass(slots=True)
class _Fields:
    """Typed access to one decoded object, naming the message and field on errors."""

    where: str
    obj: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        if key not in self.obj:
            raise ProtocolError(f"{self.where}: missing field '{key}'")
        return self.obj[key]

    def str_(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise ProtocolError(f"{self.where}: field '{key}' must be a string")
        return value

    def int_(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{self.where}: field '{key}' must be an integer")
        return value

    def num(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{self.where}: field '{key}' must be a number")
        if not _finite(value):
            raise ProtocolError(f"{self.where}: field '{key}' must be finite")
        return float(value)

    def opt_num(self, key: str) -> float | None:
        if self.obj.get(key) is None:
            return None
        return self.num(key)

    def opt_str(self, key: str) -> str | None:
        if self.obj.get(key) is None:
            return None
        return self.str_(key)

    def text(self, key: str, limit: int, *, multiline: bool = False) -> str:
        """A string field, clipped and without control characters (it gets shown)."""
        return clean_text(self.str_(key), limit, multiline=multiline)

    def opt_text(self, key: str, limit: int) -> str | None:
        value = self.opt_str(key)
        return None if value is None else clean_text(value, limit)

    def bool_(self, key: str, default: bool = False) -> bool:
        value = self.obj.get(key, default)
        if not isinstance(value, bool):
            raise ProtocolError(f"{self.where}: field '{key}' must be true or false")
        return value

    def list_(self, key: str, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The first ``limit`` objects of a list field, and how many the list held (only
        the kept ones are looked at: the rest is never decoded)."""
        value = self.get(key)
        if not isinstance(value, list):
            raise ProtocolError(f"{self.where}: field '{key}' must be a list of objects")
        kept = value[:limit]
        if not all(isinstance(v, dict) for v in kept):
            raise ProtocolError(f"{self.where}: field '{key}' must be a list of objects")
        return kept, len(value)


def _process(obj: dict[str, Any]) -> GpuProcess:
    f = _Fields("process", obj)
    return GpuProcess(
        pid=f.int_("pid"),
        user=f.opt_text("user", MAX_NAME_CHARS),
        command=f.opt_text("command", MAX_COMMAND_CHARS),
        mem_mib=f.opt_num("mem_mib"),
    )


def _static(obj: dict[str, Any]) -> GpuStatic:
    f = _Fields("hello.gpus[]", obj)
    return GpuStatic(
        index=f.int_("index"),
        uuid=f.text("uuid", MAX_NAME_CHARS),
        name=f.text("name", MAX_NAME_CHARS),
        memory_total_mib=f.opt_num("memory_total_mib"),
        power_limit_w=f.opt_num("power_limit_w"),
    )


def _reading(obj: dict[str, Any]) -> tuple[GpuReading, int]:
    """One GPU of a sample, and how many processes the host listed on it."""
    f = _Fields("sample.gpus[]", obj)
    processes, listed = f.list_("processes", MAX_PROCESSES)
    return GpuReading(
        index=f.int_("index"),
        uuid=f.text("uuid", MAX_NAME_CHARS),
        util_pct=f.opt_num("util_pct"),
        mem_used_mib=f.opt_num("mem_used_mib"),
        mem_total_mib=f.opt_num("mem_total_mib"),
        temp_c=f.opt_num("temp_c"),
        power_w=f.opt_num("power_w"),
        power_limit_w=f.opt_num("power_limit_w"),
        fan_pct=f.opt_num("fan_pct"),
        processes=tuple(_process(p) for p in processes),
        leased_by=f.opt_text("leased_by", MAX_NAME_CHARS),
    ), listed


def _hello(f: _Fields) -> Hello:
    protocol = f.int_("protocol")
    if protocol != PROTOCOL_VERSION:
        raise ProtocolError(
            f"agent speaks protocol {protocol}, this app speaks {PROTOCOL_VERSION}"
        )
    backend = f.str_("backend")
    if backend not in BACKENDS:
        raise ProtocolError(f"hello: unknown GPU backend '{backend[:40]}'")
    gpus, announced = f.list_("gpus", MAX_GPUS)
    return Hello(
        protocol=protocol,
        agent_version=f.text("agent_version", MAX_NAME_CHARS),
        hostname=f.text("hostname", MAX_NAME_CHARS),
        boot_id=f.text("boot_id", MAX_NAME_CHARS),
        backend=backend,
        backend_detail=f.text("backend_detail", MAX_DETAIL_CHARS, multiline=True),
        simulated=f.bool_("simulated"),
        gpus=tuple(_static(g) for g in gpus),
        needs_reboot=f.bool_("needs_reboot"),
        cut=cut_note("GPUs", announced, MAX_GPUS) if announced > MAX_GPUS else "",
    )


def _sample(f: _Fields) -> Sample:
    gpus, announced = f.list_("gpus", MAX_GPUS)
    decoded = [_reading(g) for g in gpus]
    most = max((listed for _gpu, listed in decoded), default=0)
    cuts = []
    if announced > MAX_GPUS:
        cuts.append(cut_note("GPUs", announced, MAX_GPUS))
    if most > MAX_PROCESSES:
        cuts.append(cut_note("processes on one GPU", most, MAX_PROCESSES))
    return Sample(seq=f.int_("seq"), time=f.num("time"),
                  gpus=tuple(reading for reading, _listed in decoded), cut="; ".join(cuts))


def decode(line: bytes | str) -> Message:
    """Parse one line from the agent. Raises ProtocolError with a readable reason."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError(f"message of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"message is not UTF-8: {exc}") from None
    elif len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"message of {len(line)} characters exceeds {MAX_LINE_BYTES}")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        # ValueError beyond JSONDecodeError: an integer of more than 4300 digits.
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message must be a JSON object")
    kind = obj.get("type")
    f = _Fields(str(kind)[:40], obj)
    if kind == "hello":
        return _hello(f)
    if kind == "sample":
        return _sample(f)
    if kind == "pong":
        return Pong(id=f.int_("id"))
    if kind == "error":
        return AgentError(message=f.text("message", MAX_DETAIL_CHARS, multiline=True),
                          fatal=f.bool_("fatal"))
    if kind == "tail":
        return _tail(f)
    raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _finite(value: float) -> bool:
    """``math.isfinite`` that says False for an integer beyond float range (instead of
    raising OverflowError, which a JSON line like ``1`` + 400 zeros would cause)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _value(where: str, value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where}: a point's value must be a number, 'nan' or 'inf'")
    if not _finite(value) and isinstance(value, int):
        raise ProtocolError(f"{where}: a point's value is out of range")
    return float(value)


def _points(where: str, raw: Any) -> tuple[MetricPoint, ...]:
    if not isinstance(raw, list):
        raise ProtocolError(f"{where}: field 'points' must be a list")
    points = []
    names: dict[str, str] = {}  # a chunk repeats a few series names many times
    for item in raw[:MAX_POINTS_PER_CHUNK]:
        if not isinstance(item, list) or len(item) != 4:
            raise ProtocolError(f"{where}: a point must be [series, step, wall, value]")
        series, step, wall, value = item
        if not isinstance(series, str) or not series:
            raise ProtocolError(f"{where}: a point's series must be a non-empty string")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise ProtocolError(f"{where}: a point's step must be an integer or null")
        if isinstance(wall, bool) or not isinstance(wall, int | float) or not _finite(wall):
            raise ProtocolError(f"{where}: a point's wall time must be a finite number")
        name = names.get(series)
        if name is None:
            name = names[series] = no_controls(series)
        points.append(MetricPoint(name, step, float(wall), _value(where, value)))
    return tuple(points)


def _tail(f: _Fields) -> TailChunk:
    start, end, inode = f.int_("start"), f.int_("end"), f.int_("inode")
    if start < 0 or end < start or not 0 <= inode < 1 << 64:
        raise ProtocolError(f"tail: bad byte range [{start}, {end}) or inode {inode}")
    data = b""
    if f.obj.get("data") is not None:
        try:
            data = base64.b64decode(f.str_("data"), validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("tail: field 'data' is not base64") from None
    params = f.obj.get("params") or {}
    if not isinstance(params, dict):
        raise ProtocolError("tail: field 'params' must be an object")
    params, cut = bound_params(params)
    notes = [f.opt_text("warning", MAX_DETAIL_CHARS) or "", cut]
    raw_points = f.obj.get("points") or []
    if isinstance(raw_points, list) and len(raw_points) > MAX_POINTS_PER_CHUNK:
        notes.append(f"{len(raw_points) - MAX_POINTS_PER_CHUNK} points left out "
                     f"(at most {MAX_POINTS_PER_CHUNK} a chunk)")
    source = f.str_("source")
    if len(source) > MAX_SOURCE_CHARS:
        raise ProtocolError(f"tail: a source name of {len(source)} characters")
    source = no_controls(source)  # a key of the stored offsets: it must encode
    return TailChunk(
        run_id=f.text("run_id", MAX_NAME_CHARS),  # it gets logged; real ids are short
        source=source,
        inode=inode,
        start=start,
        end=end,
        data=data,
        points=_points("tail", raw_points),
        params=params,
        reset=f.bool_("reset"),
        warning="; ".join(note for note in notes if note),
    )


COMMANDS = ("configure", "ping", "shutdown", "watch", "unwatch")


def encode_command(kind: str, **fields: Any) -> bytes:
    """One app → agent command line: ``configure``, ``ping``, ``shutdown``, ``watch``
    (``run_id``, ``offsets``) or ``unwatch`` (``run_id``)."""
    if kind not in COMMANDS:
        raise ValueError(f"unknown command {kind!r}")
    return (json.dumps({"type": kind, **fields}, separators=(",", ":")) + "\n").encode()

