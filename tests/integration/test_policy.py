"""The lab policy on a host (shares, quotas): read only from a root-owned file, and its
quotas enforced on the host at lease time, whatever a user's Labdeck believes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.harness.runhost import AGENT_DIR, RunHost, gated_job

sys.path.insert(0, str(AGENT_DIR))
import policy

POLICY_TOML = """\
[shares]
default = 1
alice = 2

[quota]
max_gpus_per_user = 2
max_reservation_hours = 4
max_reservations_per_user = 1

[quota.users.bob]
max_gpus = 6
"""


def write_policy(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_policy_file_read_as_toml_or_json(tmp_path: Path) -> None:
    write_policy(tmp_path, "policy.toml", POLICY_TOML)
    rules = policy.load(str(tmp_path))
    assert rules.problem is None and rules.source == str(tmp_path / "policy.toml")
    assert (rules.share("alice"), rules.share("carol")) == (2.0, 1.0)
    assert (rules.gpu_quota("carol"), rules.gpu_quota("bob")) == (2, 6)
    assert (rules.max_reservation_hours, rules.max_reservations) == (4.0, 1)
    other = tmp_path / "json"
    write_policy(other, "policy.json", json.dumps({"quota": {"max_gpus_per_user": 3}}))
    assert policy.load(str(other)).gpu_quota("anyone") == 3
    # No file: equal shares, no quotas.
    empty = policy.load(str(tmp_path / "none"))
    assert empty.problem is None and empty.gpu_quota("x") is None and empty.share("x") == 1.0


def test_a_policy_anyone_could_have_written_is_ignored_with_the_reason(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "policy.toml", POLICY_TOML)
    path.chmod(0o666)
    rules = policy.load(str(tmp_path))
    assert rules.gpu_quota("x") is None and "must belong to root" in (rules.problem or "")
    path.chmod(0o644)
    os.chown(path, 65534, -1)  # nobody's
    assert "must belong to root" in (policy.load(str(tmp_path)).problem or "")
    path.unlink()
    write_policy(tmp_path, "policy.toml", "[quota\nbroken")
    assert "not valid TOML" in (policy.load(str(tmp_path)).problem or "")


def test_the_gpu_quota_is_enforced_on_the_host_at_lease_time(
    host: RunHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc-labdeck"
    write_policy(folder, "policy.json", json.dumps({"quota": {"max_gpus_per_user": 2}}))
    monkeypatch.setenv("LABDECK_POLICY_DIR", str(folder))
    first = host.launch("rquota001", gated_job(host, "go-q"), gpus=((0, "GPU-q0"),))
    assert first["status"]["kind"] == "running"
    # Two more GPUs would make three for this user: refused, and nothing left behind.
    over = host.launch("rquota002", ["true"], gpus=((1, "GPU-q1"), (2, "GPU-q2")))
    assert over["ok"] is False
    assert over["refused"].startswith("quota: root holds 1 GPU(s) on this host and the lab "
                                      "policy allows 2 per user")
    assert not host.run_dir("rquota002").exists()
    # One more is within the quota.
    assert host.launch("rquota003", ["true"], gpus=((1, "GPU-q1"),))["ok"]
    (host.root / "go-q").touch()
    host.wait_kind("rquota001", "finished")


def test_reservation_limits_come_from_the_policy(
    host: RunHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc-labdeck"
    write_policy(folder, "policy.toml", POLICY_TOML)
    monkeypatch.setenv("LABDECK_POLICY_DIR", str(folder))
    now = time.time()
    too_long = host.ctl({"op": "reserve", "gpu_uuid": "GPU-1", "until": now + 5 * 3600})
    assert too_long["ok"] is False and "at most 4 hours" in too_long["refused"]
    assert host.ctl({"op": "reserve", "gpu_uuid": "GPU-1", "until": now + 3600})["ok"]
    second = host.ctl({"op": "reserve", "gpu_uuid": "GPU-2", "until": now + 3600})
    assert second["ok"] is False and "1 reserved GPU(s) per user" in second["refused"]
    # Renewing one's own reservation is not a second one.
    assert host.ctl({"op": "reserve", "gpu_uuid": "GPU-1", "until": now + 7200})["ok"]
    board = host.ctl({"op": "board"})
    assert board["policy"]["max_reservations_per_user"] == 1
    assert [r["gpu_uuid"] for r in board["board"]["reservations"]] == ["GPU-1"]
