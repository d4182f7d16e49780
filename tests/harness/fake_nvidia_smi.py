# ruff: noqa: E501  (the table reproduces nvidia-smi's fixed-width lines)
"""A stand-in for ``nvidia-smi`` that prints what a real H100 host printed (smi.txt).

Supports the table (no arguments), ``--query-gpu=…`` and ``--query-compute-apps=…`` with
``--format=csv[,noheader][,nounits]``, ``-lms N`` / ``-l N`` loops (until killed) and
``--help-query-gpu``. Switched by environment variables:

  FAKE_SMI_GPUS   number of GPUs (default 1)
  FAKE_SMI_MODE   ok | mismatch (driver/library mismatch, exit 18) | garbage (junk lines
                  mixed with valid ones)
  FAKE_SMI_APPS   running processes, "pid:MiB:gpuindex" comma-separated
  FAKE_SMI_APPS_DELAY_S  seconds ``--query-compute-apps`` takes before it answers (a
                  slow or hung driver), default 0

A GPU with a process reports the steady training values of the NVML recording; one
without reports the idle values of smi.txt.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

UUID0 = "GPU-a985d89e-47d5-b413-d80b-3fb47274ecd8"
NAME = "NVIDIA H100 80GB HBM3"
DRIVER = "580.159.04"
TOTAL_MIB = 81559
RESERVED_MIB = 480
# The recording shows 8 MiB of context memory on the GPU beyond the process's own.
CONTEXT_MIB = 8
HELP = Path(__file__).resolve().parents[2].parent / "shared/fixtures/nvidia-h100/help_query_gpu.txt"
MISMATCH = "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.159"

# name -> (unit shown with units, header base name)
UNITS = {
    "utilization.gpu": "%", "utilization.memory": "%", "memory.used": "MiB",
    "memory.total": "MiB", "memory.free": "MiB", "power.draw": "W", "power.limit": "W",
    "fan.speed": "%", "clocks.sm": "MHz", "clocks.mem": "MHz", "used_memory": "MiB",
}
HEADERS = {
    "clocks.sm": "clocks.current.sm", "clocks.mem": "clocks.current.memory",
    "used_memory": "used_gpu_memory",
}


def gpu_uuid(index: int) -> str:
    return UUID0 if index == 0 else UUID0[:-2] + f"{index:02x}"


def apps() -> list[tuple[int, int, int]]:
    found = []
    for item in os.environ.get("FAKE_SMI_APPS", "").split(","):
        if item.strip():
            pid, mib, gpu = (int(part) for part in item.split(":"))
            found.append((pid, mib, gpu))
    return found


def gpu_values(index: int, count: int) -> dict[str, str]:
    used = sum(mib for _pid, mib, gpu in apps() if gpu == index)
    busy = used > 0
    if busy:
        used += CONTEXT_MIB
    return {
        "index": str(index), "uuid": gpu_uuid(index), "name": NAME, "gpu_name": NAME,
        "utilization.gpu": "100" if busy else "0",
        "utilization.memory": "17" if busy else "0",
        "memory.used": str(used), "memory.total": str(TOTAL_MIB),
        "memory.free": str(TOTAL_MIB - RESERVED_MIB - used),
        "temperature.gpu": "70" if busy else "50",
        "power.draw": "648.82" if busy else "79.26", "power.limit": "700.00",
        "fan.speed": "[N/A]", "clocks.sm": "1980" if busy else "345", "clocks.mem": "2619",
        "pstate": "P0", "driver_version": DRIVER, "pci.bus_id": f"00000000:00:{6 + index:02X}.0",
        "compute_mode": "Default", "mig.mode.current": "Disabled", "count": str(count),
        "timestamp": time.strftime("%Y/%m/%d %H:%M:%S.000"),
    }


def cell(field: str, value: str, units: bool) -> str:
    unit = UNITS.get(field)
    if units and unit and not value.startswith("["):
        return f"{value} {unit}"
    return value


def header(fields: list[str], units: bool) -> str:
    names = []
    for field in fields:
        name = HEADERS.get(field, field)
        names.append(f"{name} [{UNITS[field]}]" if units and field in UNITS else name)
    return ", ".join(names)


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def query_gpu(fields: list[str], count: int, units: bool) -> list[str]:
    lines = []
    for index in range(count):
        values = gpu_values(index, count)
        lines.append(", ".join(cell(f, values[f], units) for f in fields))
    return lines


def query_apps(fields: list[str], units: bool) -> list[str]:
    lines = []
    time.sleep(float(os.environ.get("FAKE_SMI_APPS_DELAY_S", "0")))
    for pid, mib, gpu in apps():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            name = "python3"
        values = {
            "pid": str(pid), "process_name": name, "name": name, "used_memory": str(mib),
            "gpu_uuid": gpu_uuid(gpu), "gpu_name": NAME, "gpu_bus_id": f"00000000:00:{6 + gpu:02X}.0",
        }
        lines.append(", ".join(cell(f, values[f], units) for f in fields))
    return lines


GARBAGE = [
    "\x1b[31mgarbage line ###\x1b[0m",
    f"0, {UUID0}, {NAME}, lots, 0, 81559, 50, 79.26, 700.00, [N/A]",
    "0, GPU-a98",
]


def table(count: int) -> None:
    rule = "+-----------------------------------------+------------------------+----------------------+"
    out(time.strftime("%a %b %d %H:%M:%S %Y       "))
    out("+-----------------------------------------------------------------------------------------+")
    out(f"| NVIDIA-SMI {DRIVER}             Driver Version: {DRIVER}     CUDA Version: 13.0     |")
    out(rule)
    out("| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |")
    out("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |")
    out("|                                         |                        |               MIG M. |")
    out("|=========================================+========================+======================|")
    for index in range(count):
        v = gpu_values(index, count)
        power = f"{round(float(v['power.draw']))}W /  700W"
        memory = f"{v['memory.used']}MiB /  {TOTAL_MIB}MiB"
        out(f"| {index:>3}  {NAME:<31}On  |   {v['pci.bus_id']} Off |                    0 |")
        out(f"| N/A   {v['temperature.gpu']}C    P0 {power:>23} | {memory:>22} | "
            f"{v['utilization.gpu'] + '%':>7}      Default |")
        out("|                                         |                        |             Disabled |")
        out(rule)
    out("")
    out("+-----------------------------------------------------------------------------------------+")
    out("| Processes:                                                                              |")
    out("|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |")
    out("|        ID   ID                                                               Usage      |")
    out("|=========================================================================================|")
    running = apps()
    if not running:
        out("|  No running processes found                                                             |")
    for pid, mib, gpu in running:
        out(f"|  {gpu:>3}   N/A  N/A  {pid:>15}      C   {'python3':<36}{str(mib) + 'MiB':>10} |")
    out("+-----------------------------------------------------------------------------------------+")


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # die quietly like the real tool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    mode = os.environ.get("FAKE_SMI_MODE", "ok")
    count = int(os.environ.get("FAKE_SMI_GPUS", "1"))
    if mode == "mismatch":
        out(MISMATCH)
        return 18
    if not argv:
        table(count)
        return 0
    if argv == ["--help-query-gpu"]:
        sys.stdout.write(HELP.read_text() if HELP.exists() else "List of valid properties\n")
        return 0
    query, fmt, loop_s = None, None, None
    args = iter(argv)
    for arg in args:
        if arg.startswith(("--query-gpu=", "--query-compute-apps=")):
            query = arg
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1].split(",")
        elif arg in ("-lms", "-l"):
            loop_s = int(next(args)) / (1000.0 if arg == "-lms" else 1.0)
        elif arg.startswith(("--loop-ms=", "--loop=")):
            value = int(arg.split("=", 1)[1])
            loop_s = value / 1000.0 if arg.startswith("--loop-ms=") else float(value)
        else:
            out('Invalid combination of input arguments. Please run "nvidia-smi -h" for help.')
            return 2
    if query is None or fmt is None or "csv" not in fmt:
        out("Only the CSV queries are simulated.")
        return 2
    units, with_header = "nounits" not in fmt, "noheader" not in fmt
    kind, _, field_text = query.partition("=")
    fields = [f.strip() for f in field_text.split(",")]
    known = set(gpu_values(0, 1)) if kind == "--query-gpu" else {
        "pid", "process_name", "name", "used_memory", "gpu_uuid", "gpu_name", "gpu_bus_id"}
    for field in fields:
        if field not in known:
            out(f'Field "{field}" is not a valid field to query.')
            return 2
    first = True
    while True:
        lines = query_gpu(fields, count, units) if kind == "--query-gpu" else query_apps(fields, units)
        if mode == "garbage":
            lines = GARBAGE + lines if kind == "--query-gpu" else ["pid?? ,", *lines]
        if with_header and first:
            out(header(fields, units))
        for line in lines:
            out(line)
        sys.stdout.flush()
        first = False
        if loop_s is None:
            return 0
        time.sleep(loop_s)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
