"""The nvidia-smi CSV parsers against the recorded output (the fake nvidia-smi's fidelity
to that recording: tests/integration/test_fake_nvidia_smi.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ssh_backend" / "agent"))
import gpu_smi  # noqa: E402

from tests.harness.smi_recording import recorded_output, smi_transcript  # noqa: E402


@pytest.fixture(scope="module")
def smi_txt() -> str:
    return smi_transcript()


def test_recorded_nounits_line(smi_txt: str) -> None:
    [line] = recorded_output(smi_txt, "nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,"
                             "utilization.memory,memory.used,memory.total,temperature.gpu")
    # The recording also asked for utilization.memory; drop it to get the agent's fields.
    cells = line.split(", ")
    del cells[4]
    gpu = gpu_smi.parse_gpu_line(", ".join(cells))
    assert gpu == {
        "index": 0, "uuid": "GPU-a985d89e-47d5-b413-d80b-3fb47274ecd8",
        "name": "NVIDIA H100 80GB HBM3", "util_pct": 0.0, "mem_used_mib": 0.0,
        "mem_total_mib": 81559.0, "temp_c": 50.0, "power_w": 79.26, "power_limit_w": 700.0,
        "fan_pct": None,
    }


def test_recorded_line_with_units(smi_txt: str) -> None:
    output = recorded_output(smi_txt, "nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,"
                             "utilization.memory,memory.used,memory.total,memory.free")
    header, line = output
    names = [re.sub(r" \[.*\]$", "", h) for h in header.split(", ")]
    values = dict(zip(names, line.split(", "), strict=True))
    agent_line = ", ".join(values[f] for f in gpu_smi.GPU_FIELDS)
    assert "0 %" in agent_line and "81559 MiB" in agent_line and "79.26 W" in agent_line
    gpu = gpu_smi.parse_gpu_line(agent_line)
    assert (gpu["util_pct"], gpu["mem_used_mib"], gpu["power_w"], gpu["fan_pct"]) == (
        0.0, 0.0, 79.26, None)
    assert gpu_smi.is_header(header) and not gpu_smi.is_header(line)


def test_recorded_empty_compute_apps(smi_txt: str) -> None:
    output = recorded_output(smi_txt, "nvidia-smi --query-compute-apps")
    assert output == ["pid, process_name, used_gpu_memory [MiB], gpu_uuid"]
    assert gpu_smi.parse_apps("\n".join(output)) == []


def test_compute_apps_with_processes() -> None:
    text = "446, 1032, GPU-a\n447, [N/A], GPU-b\n"
    assert gpu_smi.parse_apps(text) == [(446, 1032.0, "GPU-a"), (447, None, "GPU-b")]
    assert gpu_smi.parse_apps("446, 1032 MiB, GPU-a") == [(446, 1032.0, "GPU-a")]


@pytest.mark.parametrize("cell", ["[N/A]", "[Not Supported]", "N/A", "", "  ", "[Unknown Error]"])
def test_missing_values_are_none_never_zero(cell: str) -> None:
    assert gpu_smi.parse_value(cell) is None


def test_mismatch_detection() -> None:
    text = ("Failed to initialize NVML: Driver/library version mismatch\n"
            "NVML library version: 580.159\n")
    message = gpu_smi.is_mismatch(text)
    assert message is not None and "version mismatch" in message and "580.159" in message
    assert gpu_smi.is_mismatch("0, GPU-a, NVIDIA H100") is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("garbage line ###", "expected 10 comma-separated fields, got 1"),
        ("0, GPU-a98", "got 2"),
        ("x, GPU-a, H100, 0, 0, 81559, 50, 79.26, 700.00, [N/A]", "index is not an integer"),
        ("0, uuid, H100, 0, 0, 81559, 50, 79.26, 700.00, [N/A]", "not a GPU uuid"),
        ("0, GPU-a, H100, lots, 0, 81559, 50, 79.26, 700.00, [N/A]", "not a number: 'lots'"),
        ("0, GPU-a, H100, nan, 0, 81559, 50, 79.26, 700.00, [N/A]", "not a finite number"),
        ("0, GPU-a, , 0, 0, 81559, 50, 79.26, 700.00, [N/A]", "name is empty"),
    ],
)
def test_garbage_lines_are_rejected_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        gpu_smi.parse_gpu_line(line)


def test_garbage_compute_apps_line_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected pid, memory, uuid"):
        gpu_smi.parse_apps("pid?? ,")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=160)
       | st.lists(st.sampled_from(["0", "GPU-a", "H100", "[N/A]", "1e400", "-1", "", "5 W",
                                   "nan", "inf", "12", "x"]), max_size=12).map(", ".join))
def test_line_parser_fails_only_with_value_errors(line: str) -> None:
    try:
        gpu = gpu_smi.parse_gpu_line(line)
    except ValueError:
        return
    assert set(gpu) >= {"index", "uuid", "util_pct", "fan_pct"}
    for key in ("util_pct", "mem_used_mib", "power_w", "temp_c"):
        assert gpu[key] is None or gpu[key] == gpu[key]


# -- the fake nvidia-smi prints what the real one printed ----------------------------


