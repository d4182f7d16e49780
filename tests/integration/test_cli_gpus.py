"""``labdeck hosts add`` + ``labdeck gpus`` against real sshd hosts (simulated GPUs).

Everything runs as real subprocesses: the CLI connects over SSH with the host keys that
were written into its LABDECK_HOME/known_hosts, uploads the agent, and prints what the
agent's simulated H100s report. Keys that are unknown or changed are shown, not accepted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.store import Store
from ssh_backend.hostkeys import KnownHosts, fingerprint
from tests.conftest import Lab
from tests.harness.labcli import LabCli
from tests.harness.sshd import SshdHost

pytestmark = pytest.mark.sshd

H100_MEM_TOTAL_MIB = 81559.0  # from the recording in shared/fixtures/nvidia-h100


class Cli(LabCli):
    """The CLI (HOME without the ~/.ssh of the machine running the tests) and its keys."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, timeout=90)
        self.known_hosts = KnownHosts(self.home / "known_hosts")

    def add(self, host: SshdHost) -> None:
        result = self(
            "hosts", "add", host.name, "--ssh", f"root@{host.address}:{host.port}",
            "--key", str(host.client_key), "--simulate-gpus", "4", "--interval", "0.2",
        )
        assert result.returncode == 0, result.stderr

    def add_stored(self, hosts: list[SshdHost]) -> None:
        """Add hosts straight to the store (quicker than one CLI process per host)."""
        with Store.open(self.store_path) as store:
            for host in hosts:
                store.add_host(host.spec())

    def gpus(self, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
        result = self("gpus", "--json", "--timeout", "20", *extra)
        assert "Traceback" not in result.stderr, result.stderr
        hosts = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
        return result.returncode, hosts

    def known_lines(self) -> list[str]:
        path = self.home / "known_hosts"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A fresh LABDECK_HOME: no hosts, no trusted keys."""
    return Cli(tmp_path)


def test_gpus_reads_every_gpu_of_every_host(cli: Cli, lab: Lab) -> None:
    for host in lab.hosts:
        cli.add(host)
        host.trust(cli.known_hosts)  # hashed lines, as `labdeck hosts trust` writes them
    assert all(line.startswith("|1|") for line in cli.known_lines())

    rc, hosts = cli.gpus()
    assert rc == 0, hosts
    assert sorted(hosts) == sorted(h.name for h in lab.hosts)
    for shown in hosts.values():
        assert shown["state"] == "online" and shown["simulated"] is True
        gpus = shown["gpus"]
        assert isinstance(gpus, list) and [g["index"] for g in gpus] == [0, 1, 2, 3]
        for gpu in gpus:
            assert "H100" in gpu["name"]
            assert gpu["mem_total_mib"] == H100_MEM_TOTAL_MIB
            assert 0 <= gpu["mem_used_mib"] <= H100_MEM_TOTAL_MIB
            assert 0 <= gpu["util_pct"] <= 100
            assert 30 <= gpu["temp_c"] <= 90
            assert gpu["power_limit_w"] == 700.0
            assert 0 < gpu["power_w"] <= 700.0
            assert gpu["fan_pct"] is None  # "Not Supported" on this GPU: null, never 0
            assert isinstance(gpu["processes"], list)
        assert len({g["uuid"] for g in gpus}) == 4

    table = cli("gpus", "--timeout", "20")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith(lab.hosts[0].name[:4])]
    assert len(rows) == 12
    assert all("81559 MiB" in row and "/ 700 W" in row for row in rows)


def test_unknown_key_is_reported_then_trusted_with_yes(cli: Cli, lab: Lab) -> None:
    ws1, ws2, ws3 = lab.hosts
    cli.add_stored(lab.hosts)
    ws1.trust(cli.known_hosts)
    ws2.trust(cli.known_hosts)

    rc, hosts = cli.gpus()
    assert rc == 1
    unknown = hosts[ws3.name]
    assert unknown["state"] == "hostkey_unknown" and unknown["gpus"] == []
    assert f"labdeck hosts trust {ws3.name}" in str(unknown["detail"])
    assert hosts[ws1.name]["state"] == "online"
    assert len(hosts[ws1.name]["gpus"]) == 4
    table = cli("gpus", "--timeout", "20")
    assert table.returncode == 1 and f"labdeck hosts trust {ws3.name}" in table.stdout

    before = cli.known_lines()
    trusted = cli("hosts", "trust", ws3.name, "--yes")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert f"trusted ssh-ed25519 {fingerprint(ws3.host_key)}" in trusted.stdout
    assert f"{ws3.name} is online" in trusted.stdout
    assert len(cli.known_lines()) == len(before) + 1
    assert cli.known_hosts.check(ws3.address, ws3.port, ws3.host_key) == "known"

    rc, hosts = cli.gpus()
    assert rc == 0 and all(h["state"] == "online" for h in hosts.values())
    again = cli("hosts", "trust", ws3.name, "--yes")
    assert again.returncode == 0 and "already trusted" in again.stdout


def test_trust_on_a_terminal_saves_nothing_when_the_answer_is_no(cli: Cli, lab: Lab) -> None:
    cli.add_stored(lab.hosts[:1])
    master, slave = os.openpty()
    try:
        os.write(master, b"n\n")  # waits in the terminal's line buffer for the prompt
        result = cli("hosts", "trust", lab.hosts[0].name, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 1
    assert fingerprint(lab.hosts[0].host_key) in result.stdout
    assert "[y/N]" in result.stdout
    assert "key not trusted; nothing was saved" in result.stderr
    assert cli.known_lines() == []


def test_a_changed_key_is_never_accepted(tmp_path: Path, lab: Lab) -> None:
    # A host of its own: its key is about to change. The lab's sshd_lab kills it at the end.
    host: SshdHost = lab.sshd.add_host(f"moved-{tmp_path.name}"[:40])
    cli = Cli(tmp_path / "cli")
    cli.add(host)
    host.trust(cli.known_hosts)
    host.rotate_host_key()
    before = cli.known_lines()

    rc, hosts = cli.gpus()
    assert rc == 1 and hosts[host.name]["state"] == "hostkey_changed"
    assert "CHANGED" in str(hosts[host.name]["detail"])
    refused = cli("hosts", "trust", host.name, "--yes")
    assert refused.returncode == 1
    assert "CHANGED" in refused.stderr and "trusted ssh-" not in refused.stdout
    assert cli.known_lines() == before


def test_ctrl_c_at_the_trust_prompt_ends_at_once(cli: Cli, lab: Lab) -> None:
    cli.add_stored(lab.hosts[1:2])
    master, slave = os.openpty()
    proc = cli.popen("hosts", "trust", lab.hosts[1].name,
                     stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        seen = b""
        while b"[y/N]" not in seen:
            chunk = proc.stdout.read1(4096)
            assert chunk, "the prompt never appeared"
            seen += chunk
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        # The session waiting for the answer is refused, so the exit does not wait for it.
        # (Without that, stopping the session waits out its 5 s stop timeout.)
        assert time.monotonic() - started < 3
    finally:
        os.close(slave)
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err.decode().strip().splitlines() == ["labdeck: interrupted"]
    assert cli.known_lines() == []
