"""The fake nvidia-smi (tests/harness/bin/nvidia-smi) run as a process: it prints what the
real one printed (the recording), and its switches for a driver mismatch and processes.
The parsers of that output are tests/unit/test_smi_parser.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.smi_recording import recorded_output, smi_transcript

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import gpu_smi  # noqa: E402

FAKE_SMI = ROOT / "tests" / "harness" / "bin" / "nvidia-smi"


@pytest.fixture(scope="module")
def smi_txt() -> str:
    return smi_transcript()


def run_fake(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FAKE_SMI), *args], capture_output=True, text=True, timeout=20,
                          env={**os.environ, **env}, check=False)


def test_fake_table_equals_recording(smi_txt: str) -> None:
    recorded = recorded_output(smi_txt, "nvidia-smi", exact=True)
    fake = run_fake().stdout.splitlines()
    # The first line is the clock; the rest must match byte for byte.
    assert fake[1:] == recorded[1:]


def test_fake_queries_equal_recording(smi_txt: str) -> None:
    for prefix in ("nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,utilization.memory,"
                   "memory.used,memory.total,memory.free",
                   "nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,utilization.memory,"
                   "memory.used,memory.total,temperature.gpu",
                   "nvidia-smi --query-compute-apps"):
        command = next(line for line in smi_txt.splitlines() if line.startswith("+ " + prefix))
        args = command.split()[2:]
        assert run_fake(*args).stdout.splitlines() == recorded_output(smi_txt, prefix)


def test_fake_mismatch_exits_18() -> None:
    result = run_fake("--query-gpu=index", "--format=csv", FAKE_SMI_MODE="mismatch")
    assert result.returncode == 18
    assert gpu_smi.is_mismatch(result.stdout)


def test_fake_lists_processes() -> None:
    result = run_fake("--query-compute-apps=pid,used_memory,gpu_uuid",
                      "--format=csv,noheader,nounits", FAKE_SMI_GPUS="2",
                      FAKE_SMI_APPS="1234:1082:1")
    [(pid, mem, uuid)] = gpu_smi.parse_apps(result.stdout)
    assert (pid, mem) == (1234, 1082.0) and uuid.startswith("GPU-")
