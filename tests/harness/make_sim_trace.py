"""Derive ssh_backend/agent/sim_trace.json from the real H100 NVML recording.

    python tests/harness/make_sim_trace.py [path/to/nvml.json]

The simulated GPU backend replays this file. It keeps the idle reading, the 10 Hz trace from
the moment the training process appeared (utilisation, memory, temperature, power and the
process's own memory) and the reading taken after the run. Memory is converted to what the
agent reports (NVML memory v2): the recording used v1, which counts the driver's reserved
memory as used, so the reserved amount (the idle reading, no process on the GPU) is
subtracted. A unit test checks the committed file equals what this script derives.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "ssh_backend" / "agent" / "sim_trace.json"
FIXTURE = ROOT.parent / "shared" / "fixtures" / "nvidia-h100" / "nvml.json"
MIB = 1024 * 1024
# A GPU counts as in its steady training phase at this utilisation or more; the simulator
# replays that phase back and forth (no jumps) for as long as the simulated run lives.
STEADY_UTIL_PCT = 90
STEADY_POWER_SHARE = 0.95  # and the power has settled near its peak


def _reading(entry: dict[str, Any], reserved: int) -> dict[str, Any]:
    return {
        "util_pct": entry["util"]["gpu"],
        "mem_used_mib": round((entry["mem"]["used"] - reserved) / MIB, 3),
        "temp_c": entry["temp"],
        "power_w": entry["power_mw"] / 1000.0,
    }


def derive(nvml: dict[str, Any]) -> dict[str, Any]:
    idle = nvml["idle"]
    if idle["procs"]:
        raise ValueError("the idle reading has processes: cannot tell the reserved memory")
    reserved = idle["mem"]["used"]
    trace = nvml["trace"]
    start = next(i for i, entry in enumerate(trace) if entry["procs"])
    train = trace[start:]
    t0 = train[0]["t"]
    top_power = max(entry["power_mw"] for entry in train)
    steady = [
        i for i, entry in enumerate(train)
        if entry["util"]["gpu"] >= STEADY_UTIL_PCT
        and entry["power_mw"] >= STEADY_POWER_SHARE * top_power
    ]
    columns: dict[str, list[Any]] = {
        "t": [], "util_pct": [], "mem_used_mib": [], "temp_c": [], "power_w": [],
        "proc_mem_mib": [],
    }
    for entry in train:
        reading = _reading(entry, reserved)
        columns["t"].append(round(entry["t"] - t0, 3))
        for key, value in reading.items():
            columns[key].append(value)
        procs = entry["procs"]
        columns["proc_mem_mib"].append(
            round(sum(p["usedGpuMemory"] or 0 for p in procs) / MIB, 3) if procs else None
        )
    return {
        "source": "nvidia-h100/nvml.json",
        "name": nvml["name"],
        "driver": nvml["driver"],
        "nvml_version": nvml["nvml_version"],
        "mem_total_mib": idle["mem"]["total"] / MIB,
        "reserved_mib": reserved / MIB,
        "power_limit_w": idle["power_limit_mw"] / 1000.0,
        "idle": _reading(idle, reserved),
        "after": _reading(nvml["after"], reserved),
        "train": columns,
        "steady_first": steady[0],
        "steady_last": steady[-1],
    }


def render(nvml: dict[str, Any]) -> str:
    return json.dumps(derive(nvml), sort_keys=True, separators=(",", ":")) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else FIXTURE
    TARGET.write_text(render(json.loads(source.read_text())), encoding="utf-8")
    print(f"wrote {TARGET} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
