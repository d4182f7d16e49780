"""Builders for the agent's JSON-lines messages (agent side of ssh_backend/protocol.py).

Stdlib only and Python >= 3.8: this file is shipped to hosts. Every builder returns a plain
dict; ``encode`` turns one into a line. Numbers that are not finite become null so a
strange reading can never produce a line the app refuses.
"""

import base64
import json
import math

# Must equal ssh_backend.protocol.PROTOCOL_VERSION (a unit test checks it).
PROTOCOL_VERSION = 1


def num(value):
    """A finite float, or None for anything missing, non-numeric or non-finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def encode(message):
    """One message as a UTF-8 line with a trailing newline."""
    text = json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (text + "\n").encode("utf-8", "replace")


def gpu_static(index, uuid, name, memory_total_mib, power_limit_w):
    return {
        "index": int(index),
        "uuid": str(uuid),
        "name": str(name),
        "memory_total_mib": num(memory_total_mib),
        "power_limit_w": num(power_limit_w),
    }


def gpu_process(pid, user, command, mem_mib):
    return {
        "pid": int(pid),
        "user": None if user is None else str(user),
        "command": None if command is None else str(command),
        "mem_mib": num(mem_mib),
    }


def gpu_reading(
    index,
    uuid,
    util_pct=None,
    mem_used_mib=None,
    mem_total_mib=None,
    temp_c=None,
    power_w=None,
    power_limit_w=None,
    fan_pct=None,
    processes=(),
    leased_by=None,
):
    return {
        "index": int(index),
        "uuid": str(uuid),
        "util_pct": num(util_pct),
        "mem_used_mib": num(mem_used_mib),
        "mem_total_mib": num(mem_total_mib),
        "temp_c": num(temp_c),
        "power_w": num(power_w),
        "power_limit_w": num(power_limit_w),
        "fan_pct": num(fan_pct),
        "processes": list(processes),
        # The run id holding this GPU's Labdeck lease (agent.py fills it in), or null.
        "leased_by": None if leased_by is None else str(leased_by),
    }


def empty_reading(static):
    """A reading with every value missing, for a GPU whose reading failed outright."""
    return gpu_reading(static["index"], static["uuid"])


def hello(agent_version, hostname, boot_id, backend, backend_detail, simulated, gpus,
          needs_reboot=False):
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "agent_version": str(agent_version),
        "hostname": str(hostname),
        "boot_id": str(boot_id),
        "backend": str(backend),
        "backend_detail": str(backend_detail),
        "simulated": bool(simulated),
        "gpus": list(gpus),
        "needs_reboot": bool(needs_reboot),
    }


def sample(seq, time_s, gpus):
    return {"type": "sample", "seq": int(seq), "time": float(time_s), "gpus": list(gpus)}


def pong(ping_id):
    return {"type": "pong", "id": int(ping_id)}


def error(message, fatal=False):
    return {"type": "error", "message": str(message)[:2000], "fatal": bool(fatal)}


def value(number):
    """A metric value for the wire: a finite float, or "nan" / "inf" / "-inf"."""
    number = float(number)
    if math.isfinite(number):
        return number
    if number != number:
        return "nan"
    return "inf" if number > 0 else "-inf"


def json_safe(obj, depth=0):
    """``obj`` with every non-finite float spelled as a string (the wire refuses NaN),
    anything JSON cannot hold as its repr, and nesting cut at 20 levels."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else value(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if depth >= 20:
        return repr(obj)[:200]
    if isinstance(obj, dict):
        return dict((str(k), json_safe(v, depth + 1)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, depth + 1) for v in obj]
    return repr(obj)[:200]


def tail(run_id, source, inode, start, end, data=b"", points=(), params=None, reset=False,
         warning=""):
    """New content of one watched file: bytes [start, end) (console bytes in ``data``),
    the points and params parsed from them, and a note for the user."""
    message = {"type": "tail", "run_id": str(run_id), "source": str(source),
               "inode": int(inode), "start": int(start), "end": int(end),
               "reset": bool(reset)}
    if data:
        message["data"] = base64.b64encode(data).decode("ascii")
    if points:
        message["points"] = [
            [str(series), None if step is None else int(step),
             num(wall) if num(wall) is not None else 0.0, value(v)]
            for series, step, wall, v in points]
    if params:
        message["params"] = json_safe(params)
    if warning:
        message["warning"] = str(warning)[:2000]
    return message
