"""Running ``ssh -G``: the cache and what invalidates it, errors with file and line, the
time limit on a ``Match exec`` that never returns, and the file ssh is told to read."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ssh_backend import ssh_g
from ssh_backend.config import ConfigError, resolve, resolve_aliases
from ssh_backend.hostspec import HostSpec

SSH = shutil.which("ssh")
pytestmark = pytest.mark.skipif(SSH is None, reason="ssh is not installed "
                                "(apt-get install openssh-client)")


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ssh command lines run (the cache starts empty)."""
    monkeypatch.setattr(ssh_g, "_cache", ssh_g._Cache())
    seen: list[list[str]] = []
    real = subprocess.Popen

    def popen(argv: list[str], **kwargs: Any) -> Any:
        seen.append(list(argv))
        return real(argv, **kwargs)

    monkeypatch.setattr(ssh_g.subprocess, "Popen", popen)
    return seen


def test_answers_are_cached_until_a_file_changes(tmp_path: Path,
                                                 runs: list[list[str]]) -> None:
    assert SSH
    inc = tmp_path / "inc.conf"
    inc.write_text("Host gpu1\n  Port 2201\n")
    config = tmp_path / "config"
    config.write_text(f"Include {inc}\nHost gpu1\n  HostName gpu1.lab\n")
    spec = HostSpec(name="gpu1", ssh_alias="gpu1")
    assert resolve(spec, config).target.port == 2201
    before = len(runs)
    assert resolve(spec, config).target.port == 2201
    assert len(runs) == before  # the second answer came from the cache
    inc.write_text("Host gpu1\n  Port 2202\n")  # an included file: same size, new mtime
    os.utime(inc, ns=(0, inc.stat().st_mtime_ns + 1_000_000_000))
    assert resolve(spec, config).target.port == 2202
    argv = runs[-1]
    assert argv[:4] == [SSH, "-G", "-F", str(config)] and argv[-2:] == ["--", "gpu1"]


def test_no_file_or_a_missing_one_reads_no_config(tmp_path: Path,
                                                  runs: list[list[str]]) -> None:
    resolve(HostSpec(name="h", hostname="h"), None)
    resolve(HostSpec(name="h", hostname="h"), tmp_path / "absent")
    assert all(argv[2:4] == ["-F", "none"] for argv in runs)


def test_ssh_refusing_the_file_names_file_and_line_for_the_import(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host gpu1\n  HostName a\nHost gpu2\n  Port 99999\n")
    with pytest.raises(ConfigError) as info:
        resolve_aliases(config)
    assert (info.value.path, info.value.line) == (str(config), 4)
    assert "99999" in info.value.problem


def test_a_match_exec_that_never_returns_is_cut_off(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh_g, "SSH_G_TIMEOUT_S", 1.0)
    config = tmp_path / "config"
    marker = tmp_path / "sleeping"
    config.write_text(f'Match exec "touch {marker}; sleep 30; rm {marker}"\n  User never\n')
    with pytest.raises(ConfigError, match="did not answer within 1 s"):
        resolve(HostSpec(name="x", ssh_alias="slow-host"), config)
    # The command ssh started was stopped with it, not left sleeping.
    found = subprocess.run(["pgrep", "-f", f"touch {marker}"], capture_output=True)
    assert found.returncode == 1, found.stdout


def test_spec_user_and_port_reach_ssh_as_l_and_p(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Match user deploy\n  HostName deploy.example\n")
    plan = resolve(HostSpec(name="x", ssh_alias="box", user="deploy", port=2022), config)
    assert (plan.target.hostname, plan.target.user, plan.target.port) == (
        "deploy.example", "deploy", 2022)
    assert plan.resolved_by == "ssh -G"
