"""The chaos run (``tests.reliability.chaos``) as a test: quick in the test command (48 runs,
network cuts of 1–4 s), 300 runs with cuts of 1–20 s under ``LABDECK_RELIABILITY=full``.

The quick variant uses a fixed seed, the full one a random seed each time; both print it
with the figures; ``LABDECK_CHAOS_SEED=N`` repeats a run, ``LABDECK_CHAOS_JSON=PATH``
also writes its figures as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.harness.netfault import unavailable_reason
from tests.reliability import scale
from tests.reliability.chaos import ChaosConfig, quick, run_chaos, table
from tests.reliability.chaos_faults import KINDS

QUICK_SEED = 24740

pytestmark = [pytest.mark.reliability, pytest.mark.sshd, pytest.mark.netns, pytest.mark.slow]


@pytest.mark.timeout(scale.pick(240, 1800))
def test_chaos_run_loses_duplicates_and_misreports_nothing(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # The quick variant (in the test command) keeps one fault schedule, so a pass or a
    # failure repeats; the full run draws a new one each time to explore further.
    default = int.from_bytes(os.urandom(2), "big") if scale.FULL else QUICK_SEED
    seed = int(os.environ.get("LABDECK_CHAOS_SEED") or default)
    config = ChaosConfig(runs=300, seed=seed) if scale.FULL else quick(seed)
    figures = run_chaos(tmp_path, config)
    report = table(figures)
    print(f"\nchaos run ({'full' if scale.FULL else 'quick'}):\n{report}")
    if os.environ.get("LABDECK_CHAOS_JSON"):
        Path(os.environ["LABDECK_CHAOS_JSON"]).write_text(json.dumps(figures, indent=2))
    problems = "\n".join(figures["problems"][:30])
    assert not figures["problems"], (
        f"seed {seed}: {len(figures['problems'])} problem(s):\n{problems}\n\n{report}\n"
        "faults:\n" + "\n".join(figures["events"]))
    # The faults were real and landed while runs were still queued or running.
    assert all(figures["faults"][kind] >= 1 for kind in KINDS), figures["faults"]
    assert any(0 < done < config.runs for done in figures["finished_at_fault"]), figures
    assert figures["runs"] == config.runs
    assert figures["succeeded"] + figures["failed_as_expected"] + figures["lost_final"] \
        == config.runs
