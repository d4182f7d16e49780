"""The NVML backend, driven by a stand-in for pynvml that replays the H100 recording."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import gpu_nvml  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "nvidia-h100"
MIB = 1024 * 1024


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


def _error_class(name: str, value: int) -> type[NVMLError]:
    def init(self: NVMLError) -> None:
        NVMLError.__init__(self, value)

    return type(name, (NVMLError,), {"__init__": init})


ERRORS = {
    "NVMLError_NotSupported": _error_class("NVMLError_NotSupported", 3),
    "NVMLError_NotFound": _error_class("NVMLError_NotFound", 6),
    "NVMLError_LibraryNotFound": _error_class("NVMLError_LibraryNotFound", 12),
    "NVMLError_FunctionNotFound": _error_class("NVMLError_FunctionNotFound", 13),
    "NVMLError_LibRmVersionMismatch": _error_class("NVMLError_LibRmVersionMismatch", 18),
}


class FakeNvml:
    """pynvml's functions and exceptions, answering from one recorded reading at a time."""

    NVML_TEMPERATURE_GPU = 0
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
    NVMLError = NVMLError
    nvmlMemory_v2 = 0x02000028

    def __init__(self, recording: dict[str, Any], reserved: int, init_error: str = "",
                 v2_error: str = "") -> None:
        self.rec = recording
        self.reserved = reserved
        self.entry = recording["idle"]
        self.init_error = init_error
        self.v2_error = v2_error
        self.calls: dict[str, int] = {}
        for name, cls in ERRORS.items():
            setattr(self, name, cls)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _value(self, key: str) -> Any:
        value = self.entry[key]
        if isinstance(value, str) and value.startswith("ERR "):
            raise ERRORS[value.split()[1].rstrip(":")]()
        return value

    def nvmlInit(self) -> None:
        if self.init_error:
            raise ERRORS[self.init_error]()

    def nvmlShutdown(self) -> None:
        self._count("shutdown")

    def nvmlSystemGetNVMLVersion(self) -> str:
        return self.rec["nvml_version"]

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.rec["driver"]

    def nvmlDeviceGetCount(self) -> int:
        return self.rec["count"]

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.rec["uuid"]

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.rec["name"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        mem = self._value("mem")
        if version is None:
            return SimpleNamespace(**mem)
        assert version == self.nvmlMemory_v2
        if self.v2_error:
            raise ERRORS[self.v2_error]()
        used = mem["used"] - self.reserved
        return SimpleNamespace(total=mem["total"], reserved=self.reserved, used=used,
                               free=mem["total"] - self.reserved - used)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(**self._value("util"))

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._value("temp")

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._value("power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self._value("power_limit_mw")

    def nvmlDeviceGetFanSpeed(self, handle: int) -> int:
        self._count("fan")
        return self._value("fan")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return [SimpleNamespace(**p) for p in self._value("procs")]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:
        return [SimpleNamespace(**p) for p in self._value("gprocs")]

    def nvmlDeviceGetPcieThroughput(self, handle: int, counter: int) -> int:
        raise AssertionError("PCIe throughput costs 20 ms a call and must not be read")


@pytest.fixture(scope="module")
def recording() -> tuple[dict[str, Any], int]:
    if not (FIXTURES / "nvml.json").exists():
        pytest.skip(f"recordings not found at {FIXTURES}")
    xml = (FIXTURES / "smi_q.xml").read_text()
    reserved = re.search(r"<fb_memory_usage>.*?<reserved>(\d+) MiB</reserved>", xml, re.S)
    assert reserved
    return json.loads((FIXTURES / "nvml.json").read_text()), int(reserved.group(1)) * MIB


def make(recording: tuple[dict[str, Any], int], **kwargs: str) -> tuple[Any, FakeNvml]:
    fake = FakeNvml(*recording, **kwargs)
    return gpu_nvml.NvmlBackend(fake), fake


def test_static_facts_and_detail(recording: tuple[dict[str, Any], int]) -> None:
    backend, _ = make(recording)
    assert backend.detail == "NVML 13.580.159.04, driver 580.159.04"
    assert backend.statics == [{
        "index": 0, "uuid": "GPU-a985d89e-47d5-b413-d80b-3fb47274ecd8",
        "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559.0, "power_limit_w": 700.0,
    }]
    assert not backend.needs_reboot


def test_idle_reading_matches_recording(recording: tuple[dict[str, Any], int]) -> None:
    backend, fake = make(recording)
    [gpu] = backend.read()
    assert gpu["util_pct"] == 0.0
    # Memory v2 leaves out the 480 MiB the driver reserves, as nvidia-smi does.
    assert gpu["mem_used_mib"] == 0.0 and gpu["mem_total_mib"] == 81559.0
    assert gpu["temp_c"] == 50.0
    assert gpu["power_w"] == pytest.approx(79.197)
    assert gpu["power_limit_w"] == 700.0
    assert gpu["fan_pct"] is None
    assert gpu["processes"] == []
    backend.read()
    assert fake.calls["fan"] == 1, "an unsupported field is asked once, not every sample"


def test_memory_v1_when_v2_is_missing(recording: tuple[dict[str, Any], int]) -> None:
    backend, _ = make(recording, v2_error="NVMLError_FunctionNotFound")
    assert backend.read()[0]["mem_used_mib"] == 480.0


def test_training_trace_is_reported_as_recorded(recording: tuple[dict[str, Any], int]) -> None:
    backend, fake = make(recording)
    nvml, reserved = recording
    seen_proc_mem = set()
    for entry in nvml["trace"]:
        fake.entry = entry
        [gpu] = backend.read()
        assert gpu["util_pct"] == entry["util"]["gpu"]
        assert gpu["mem_used_mib"] == (entry["mem"]["used"] - reserved) / MIB
        assert gpu["temp_c"] == entry["temp"]
        assert gpu["power_w"] == pytest.approx(entry["power_mw"] / 1000)
        assert [p["pid"] for p in gpu["processes"]] == [p["pid"] for p in entry["procs"]]
        for proc in gpu["processes"]:
            assert proc["pid"] == nvml["train_pid"] == 446
            seen_proc_mem.add(proc["mem_mib"])
    assert 1032.0 in seen_proc_mem and max(seen_proc_mem) == 3752.0
    fake.entry = nvml["after"]
    [gpu] = backend.read()
    assert (gpu["temp_c"], gpu["power_w"], gpu["processes"]) == (59.0, 305.186, [])


def test_processes_get_owner_and_command(recording: tuple[dict[str, Any], int]) -> None:
    backend, fake = make(recording)
    live = subprocess.Popen(["sleep", "30"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        fake.entry = dict(recording[0]["idle"], procs=[
            {"pid": live.pid, "usedGpuMemory": 1082130432},
            {"pid": gone.pid, "usedGpuMemory": None},
        ])
        [gpu] = backend.read()
    finally:
        live.kill()
        live.wait()
    by_pid = {p["pid"]: p for p in gpu["processes"]}
    assert by_pid[live.pid] == {"pid": live.pid, "user": pwd.getpwuid(os.getuid()).pw_name,
                                "command": "sleep 30", "mem_mib": 1032.0}
    assert by_pid[gone.pid] == {"pid": gone.pid, "user": None, "command": None,
                                "mem_mib": None}


def test_driver_library_mismatch_needs_reboot(recording: tuple[dict[str, Any], int]) -> None:
    backend, _ = make(recording, init_error="NVMLError_LibRmVersionMismatch")
    assert backend.needs_reboot
    assert backend.statics == [] and backend.read() == []
    assert "mismatch" in backend.detail


def test_no_library_means_unavailable(recording: tuple[dict[str, Any], int]) -> None:
    with pytest.raises(gpu_nvml.Unavailable, match="NVML"):
        make(recording, init_error="NVMLError_LibraryNotFound")


def test_a_failing_reading_is_none_not_a_crash(recording: tuple[dict[str, Any], int]) -> None:
    backend, fake = make(recording)
    fake.entry = dict(recording[0]["idle"], temp="ERR NVMLError_NotFound: Not Found",
                      mem="ERR NVMLError_NotFound: Not Found")
    [gpu] = backend.read()
    assert gpu["temp_c"] is None and gpu["mem_used_mib"] is None
    assert gpu["util_pct"] == 0.0
    fake.entry = recording[0]["idle"]
    [gpu] = backend.read()
    assert (gpu["temp_c"], gpu["mem_used_mib"]) == (50.0, 0.0), "a passing fault keeps v2"
