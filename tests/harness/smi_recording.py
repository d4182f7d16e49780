"""The nvidia-smi transcript recorded on a real H100 host (../shared/fixtures/nvidia-h100/
smi.txt, a ``set -x`` log): the file, and what one command printed in it."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "nvidia-h100"


def smi_transcript() -> str:
    """smi.txt's text; the test is skipped where the recordings are not checked out."""
    path = FIXTURES / "smi.txt"
    if not path.exists():
        pytest.skip(f"recordings not found at {FIXTURES}")
    return path.read_text()


def recorded_output(smi_txt: str, command_prefix: str, exact: bool = False) -> list[str]:
    """The lines a command printed in smi.txt (a `set -x` transcript)."""
    lines = smi_txt.splitlines()
    start = next(
        i for i, line in enumerate(lines)
        if (line == "+ " + command_prefix if exact else line.startswith("+ " + command_prefix))
    )
    out = []
    for line in lines[start + 1:]:
        if line.startswith("+ "):
            break
        out.append(line)
    return out
