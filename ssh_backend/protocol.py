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
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
# A line longer than this is refused before parsing: a runaway peer cannot exhaust memory.
MAX_LINE_BYTES = 4 * 1024 * 1024

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


@dataclass(frozen=True, slots=True)
class Sample:
    seq: int
    time: float
    gpus: tuple[GpuReading, ...]


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

    def bool_(self, key: str, default: bool = False) -> bool:
        value = self.obj.get(key, default)
        if not isinstance(value, bool):
            raise ProtocolError(f"{self.where}: field '{key}' must be true or false")
        return value

    def list_(self, key: str) -> list[dict[str, Any]]:
        value = self.get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ProtocolError(f"{self.where}: field '{key}' must be a list of objects")
        return value


def _process(obj: dict[str, Any]) -> GpuProcess:
    f = _Fields("process", obj)
    return GpuProcess(
        pid=f.int_("pid"),
        user=f.opt_str("user"),
        command=f.opt_str("command"),
        mem_mib=f.opt_num("mem_mib"),
    )


def _static(obj: dict[str, Any]) -> GpuStatic:
    f = _Fields("hello.gpus[]", obj)
    return GpuStatic(
        index=f.int_("index"),
        uuid=f.str_("uuid"),
        name=f.str_("name"),
        memory_total_mib=f.opt_num("memory_total_mib"),
        power_limit_w=f.opt_num("power_limit_w"),
    )


def _reading(obj: dict[str, Any]) -> GpuReading:
    f = _Fields("sample.gpus[]", obj)
    return GpuReading(
        index=f.int_("index"),
        uuid=f.str_("uuid"),
        util_pct=f.opt_num("util_pct"),
        mem_used_mib=f.opt_num("mem_used_mib"),
        mem_total_mib=f.opt_num("mem_total_mib"),
        temp_c=f.opt_num("temp_c"),
        power_w=f.opt_num("power_w"),
        power_limit_w=f.opt_num("power_limit_w"),
        fan_pct=f.opt_num("fan_pct"),
        processes=tuple(_process(p) for p in f.list_("processes")),
        leased_by=f.opt_str("leased_by"),
    )


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
    f = _Fields(str(kind), obj)
    if kind == "hello":
        protocol = f.int_("protocol")
        if protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                f"agent speaks protocol {protocol}, this app speaks {PROTOCOL_VERSION}"
            )
        backend = f.str_("backend")
        if backend not in BACKENDS:
            raise ProtocolError(f"hello: unknown GPU backend '{backend}'")
        return Hello(
            protocol=protocol,
            agent_version=f.str_("agent_version"),
            hostname=f.str_("hostname"),
            boot_id=f.str_("boot_id"),
            backend=backend,
            backend_detail=f.str_("backend_detail"),
            simulated=f.bool_("simulated"),
            gpus=tuple(_static(g) for g in f.list_("gpus")),
            needs_reboot=f.bool_("needs_reboot"),
        )
    if kind == "sample":
        return Sample(
            seq=f.int_("seq"),
            time=f.num("time"),
            gpus=tuple(_reading(g) for g in f.list_("gpus")),
        )
    if kind == "pong":
        return Pong(id=f.int_("id"))
    if kind == "error":
        return AgentError(message=f.str_("message"), fatal=f.bool_("fatal"))
    if kind == "tail":
        return _tail(f)
    raise ProtocolError(f"unknown message type {kind!r}")


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
    for item in raw:
        if not isinstance(item, list) or len(item) != 4:
            raise ProtocolError(f"{where}: a point must be [series, step, wall, value]")
        series, step, wall, value = item
        if not isinstance(series, str) or not series:
            raise ProtocolError(f"{where}: a point's series must be a non-empty string")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise ProtocolError(f"{where}: a point's step must be an integer or null")
        if isinstance(wall, bool) or not isinstance(wall, int | float) or not _finite(wall):
            raise ProtocolError(f"{where}: a point's wall time must be a finite number")
        points.append(MetricPoint(series, step, float(wall), _value(where, value)))
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
    return TailChunk(
        run_id=f.str_("run_id"),
        source=f.str_("source"),
        inode=inode,
        start=start,
        end=end,
        data=data,
        points=_points("tail", f.obj.get("points") or []),
        params=params,
        reset=f.bool_("reset"),
        warning=f.opt_str("warning") or "",
    )


COMMANDS = ("configure", "ping", "shutdown", "watch", "unwatch")


def encode_command(kind: str, **fields: Any) -> bytes:
    """One app → agent command line: ``configure``, ``ping``, ``shutdown``, ``watch``
    (``run_id``, ``offsets``) or ``unwatch`` (``run_id``)."""
    if kind not in COMMANDS:
        raise ValueError(f"unknown command {kind!r}")
    return (json.dumps({"type": kind, **fields}, separators=(",", ":")) + "\n").encode()

