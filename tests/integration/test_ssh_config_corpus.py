"""Every config and host of tests/corpus/ssh_configs resolved by Labdeck as by ``ssh -G``.

The expected values come from the real OpenSSH client, run here for each host (and for
each ProxyJump hop, with the hop's user and port as ssh passes them on). Labdeck resolves
through ``ssh -G`` when ssh is on PATH, and through paramiko when it is not: the fallback
must agree on every host its corpus file does not mark as beyond it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ssh_backend.config import ConfigError, ConnectPlan, list_aliases, resolve
from ssh_backend.hostspec import HostSpec

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "ssh_configs"
CONFIGS = sorted(CORPUS.glob("*.conf"))
SSH = shutil.which("ssh")

Summary = tuple[str, str, int, tuple[str, ...]]  # hostname, user, port, identity files


@dataclass(frozen=True)
class Truth:
    target: Summary
    jumps: tuple[Summary, ...]


def _marks(config: Path, label: str) -> list[str]:
    found = re.findall(rf"^# {label}:?(.*)$", config.read_text(), re.MULTILINE)
    return [word for line in found for word in re.sub(r"\(.*\)", "", line).split()]


def _expand(value: str, host: str, name: str, user: str, port: int) -> str:
    """The few tokens the corpus uses in IdentityFile, expanded independently of Labdeck."""
    value = os.path.expanduser(value).replace("${HOME}", os.environ["HOME"])
    table = {"%": "%", "h": host, "n": name, "r": user, "p": str(port),
             "d": os.environ["HOME"], "u": subprocess.check_output(["id", "-un"],
                                                                   text=True).strip()}
    return re.sub(r"%(.)", lambda m: table[m.group(1)], value)


def _ssh_g(config: Path, name: str, user: str | None = None, port: int | None = None,
           ) -> dict[str, list[str]]:
    assert SSH, "ssh is not installed (apt-get install openssh-client)"
    argv = [SSH, "-G", "-F", str(config)]
    argv += ["-l", user] if user else []
    argv += ["-p", str(port)] if port else []
    out = subprocess.run([*argv, "--", name], capture_output=True, text=True, check=True,
                         stdin=subprocess.DEVNULL, timeout=20).stdout
    options: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return options


def _summary(config: Path, name: str, user: str | None = None,
             port: int | None = None) -> tuple[Summary, str]:
    options = _ssh_g(config, name, user, port)
    defaults = _ssh_g(Path("/dev/null"), "x")["identityfile"]
    host, ruser = options["hostname"][0], options["user"][0]
    rport = int(options["port"][0])
    files = options.get("identityfile", [])
    keys = () if files == defaults else tuple(_expand(f, host, name, ruser, rport)
                                              for f in files)
    jump = options.get("proxyjump", [""])[0]
    return (host, ruser, rport, keys), jump


def _split_hop(text: str) -> tuple[str, str | None, int | None]:
    text = text.removeprefix("ssh://")
    user, _, rest = text.rpartition("@")
    found = re.fullmatch(r"\[(.*)\](?::(\d+))?|([^:]*)(?::(\d+))?", rest)
    assert found, text
    host = found.group(1) or found.group(3)
    port = found.group(2) or found.group(4)
    return host, user or None, int(port) if port else None


def ssh_truth(config: Path, name: str) -> Truth:
    target, jump = _summary(config, name)
    jumps = []
    for hop in filter(None, jump.split(",")):
        host, user, port = _split_hop(hop)
        jumps.append(_summary(config, host, user, port)[0])
    return Truth(target, tuple(jumps))


def labdeck(plan: ConnectPlan) -> Truth:
    def summary(hop: object) -> Summary:
        return (hop.hostname, hop.user, hop.port, hop.key_filenames)  # type: ignore[attr-defined]

    return Truth(summary(plan.target), tuple(summary(j) for j in plan.jumps))


@pytest.fixture
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.ssh is the corpus (relative Includes are read from ~/.ssh)."""
    shutil.copytree(CORPUS, tmp_path / ".ssh")
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path / ".ssh"


def _names(config: Path) -> list[str]:
    return list_aliases(config) + [n for n in _marks(config, "probe")
                                   if n not in list_aliases(config)]


def test_the_corpus_covers_every_construct() -> None:
    text = "\n".join(c.read_bytes().decode() for c in CORPUS.rglob("*") if c.is_file())
    for construct in ("# the main box", "Match host=b", "%%", "Match exec", "Match final",
                      "Match all", "Match localuser", "!user", "Match canonical",
                      "CanonicalizeHostname yes", "ProxyJump bastion,", "ssh://",
                      "IdentitiesOnly", "config.d/*.conf", "\r\n", 'Host "quoted"',
                      "Include blockinc", "originalhost"):
        assert construct in text, construct
    assert all(_marks(c, "source") or "# source:" in c.read_text() for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_labdeck_resolves_every_host_as_ssh_does(config: Path, ssh_home: Path) -> None:
    path = ssh_home / config.name
    names = _names(path)
    assert names, f"{config.name} names no host"
    for name in names:
        plan = resolve(HostSpec(name=name, ssh_alias=name), path)
        assert plan.resolved_by == "ssh -G"
        assert labdeck(plan) == ssh_truth(path, name), name


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_the_fallback_without_ssh_agrees_where_paramiko_can(
    config: Path, ssh_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ssh_home / config.name
    names = _names(path)
    truths = {name: ssh_truth(path, name) for name in names}
    bare = tmp_path / "bin-without-ssh"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    if "# fallback-refuses" in config.read_text():
        with pytest.raises(ConfigError, match="Match exec"):
            resolve(HostSpec(name=names[0], ssh_alias=names[0]), path)
        return
    differs = set(_marks(config, "fallback-differs"))
    for name in names:
        if name in differs:
            continue
        plan = resolve(HostSpec(name=name, ssh_alias=name), path)
        assert plan.resolved_by == "paramiko"
        assert labdeck(plan) == truths[name], name


def test_a_host_name_starting_with_a_dash_never_reaches_ssh(ssh_home: Path) -> None:
    with pytest.raises(ConfigError, match="not a host name"):
        resolve(HostSpec(name="x", ssh_alias="-oProxyCommand=touch /tmp/pwned"),
                ssh_home / "comments.conf")
