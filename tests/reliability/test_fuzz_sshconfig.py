"""Fuzzing the ssh config mapping (ssh_backend/config.py: ~/.ssh/config → connect plan).

Config files are generated from OpenSSH's keywords (Host, Match, Include, HostName, Port,
User, IdentityFile, ProxyJump, ProxyCommand, wildcards, negations, %-tokens) with valid
and garbage values, plus Include webs that loop or fan out. The only error allowed is
ConfigError, whose message starts with a file and a line; every run ends in bounded time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssh_backend.config import ConfigError, ConnectPlan, list_aliases, resolve
from ssh_backend.hostspec import HostSpec
from tests.reliability.fuzz_contract import fuzz, holds, mutated

pytestmark = [pytest.mark.reliability]

NAMES = ["gpu1", "gpu2", "*.lab", "gpu?", "!gpu2", "*", "bastion", '"a b"', "10.0.0.1"]
VALUES = {
    "Host": st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(" ".join),
    "Match": st.sampled_from(["all", "host gpu*", "!host gpu2 user root", "canonical all",
                              "originalhost gpu1", "localuser *", "final", "user", "host",
                              "all host x", '"unbalanced', "exec true", "host gpu1 exec x"]),
    "HostName": st.sampled_from(["10.0.0.7", "%h.lab", "gpu1", "[::1]", "", "%%"]),
    "Port": st.sampled_from(["22", "2222", "0", "65536", "-1", "²", "22x", "", "9" * 30]),
    "User": st.sampled_from(["ana", "%u", "root", "''"]),
    "IdentityFile": st.sampled_from(["~/.ssh/id_ed25519", "%d/.ssh/k", "/nonexistent/%h",
                                     '"a b"']),
    "ProxyJump": st.sampled_from(["bastion", "ana@bastion:2222,gpu2", "none", "ssh://b:22/",
                                  "[::1]:22", "b:notaport", "@", "a:b:c", ",", "b:²"]),
    "ProxyCommand": st.sampled_from(["ssh -W %h:%p bastion", "none", "nc %h %p"]),
    "IdentitiesOnly": st.sampled_from(["yes", "no", "maybe"]),
    "CanonicalizeHostname": st.sampled_from(["no", "bogus"]),
    "Include": st.sampled_from(["inc/*.conf", "config", "a.conf b.conf", "~/none", '"x',
                                "inc/loop.conf inc/loop.conf"]),
    "Unknownkeyword": st.just("value"),
}
LINE = st.one_of(
    st.sampled_from(sorted(VALUES)).flatmap(
        lambda key: st.tuples(st.just(key), VALUES[key], st.sampled_from([" ", "=", " = ",
                                                                          "\t"]))
    ).map(lambda kv: f"{kv[0]}{kv[2]}{kv[1]}"),
    st.sampled_from(["", "# comment", "  ", "garbage", "Host", "=", "Port"]),
    st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
)
CONFIG = st.lists(LINE, max_size=12).map(lambda lines: "\n".join(lines) + "\n")
ERROR_RE = re.compile(r"^(/|ssh config|host settings)[^\n]*:\d+: \S")


def _spec(alias: str) -> HostSpec:
    return HostSpec(name=alias, ssh_alias=alias)


def _check(path: Path, alias: str) -> None:
    for call in (lambda p: resolve(_spec(alias), p), list_aliases):
        result = holds(call, path, (ConfigError,))
        if isinstance(result, ConfigError):
            assert ERROR_RE.match(str(result)), str(result)
            assert result.problem.strip()
        elif isinstance(result, ConnectPlan):
            for hop in (result.target, *result.jumps):
                assert 0 < hop.port < 65536 and hop.hostname


def _write(folder: Path, files: dict[str, str]) -> Path:
    (folder / "inc").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("utf-8", "surrogatepass"))
    return folder / "config"


@fuzz(150, 4000)
@given(main=CONFIG, a=CONFIG, loop=CONFIG, alias=st.sampled_from(["gpu1", "gpu2", "x.lab"]))
def test_generated_configs_with_includes_give_a_plan_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, main: str, a: str, loop: str, alias: str
) -> None:
    folder = tmp_path_factory.mktemp("ssh")
    config = _write(folder, {"config": main, "a.conf": a, "inc/x.conf": a,
                             "inc/loop.conf": loop + "Include inc/loop.conf\n"})
    _check(config, alias)


SAMPLE = b"""\
Host gpu1
    HostName 10.0.0.7
    Port 2222
    User ana
    IdentityFile ~/.ssh/id_ed25519
    IdentitiesOnly yes
    ProxyJump bastion
Host bastion
    HostName 10.0.0.1
    User jump
Match host gpu*
    ProxyCommand ssh -W %h:%p bastion
Host *
    Include inc/*.conf
"""


@fuzz(150, 4000)
@given(mutated([SAMPLE]))
def test_mutated_real_config_gives_a_plan_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    folder = tmp_path_factory.mktemp("ssh")
    (folder / "inc").mkdir()
    (folder / "config").write_bytes(data)
    (folder / "inc" / "z.conf").write_text("Port 2200\n")
    _check(folder / "config", "gpu1")


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("Host gpu1\n  Port ²\n", 2, "Port must be 1-65535"),
    ("Host x\nMatch exec true\n  User bob\n", 2, "Match exec is not supported"),
    ("Match host gpu1 exec x\n  User bob\n", 1, "Match exec is not supported"),
    ("CanonicalizeHostname yes\nCanonicalizeMaxDots many\n", 0, "CanonicalizeMaxDots"),
    ("CanonicalizeHostname yes\n", 0, "canonicaldomains"),
])
def test_lookup_time_failures_are_config_errors(
    tmp_path: Path, text: str, line: int, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by fuzzing: paramiko raised ValueError / KeyError / ImportError (for Match
    exec, which needs 'invoke') out of resolve(). The fallback without an ssh client."""
    monkeypatch.setattr("ssh_backend.ssh_g.find_ssh", lambda: None)
    config = tmp_path / "config"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(_spec("gpu1"), config)
    assert info.value.line == line and info.value.path == str(config)
    assert problem.lower() in str(info.value).lower()


def test_include_fan_out_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    """Eight files each including the next one 30 times: 30**8 lines if followed."""
    for level in range(8):
        name = "config" if level == 0 else f"l{level}.conf"
        include = f"{tmp_path}/l{level + 1}.conf"  # absolute: relative ones are in ~/.ssh
        (tmp_path / name).write_text(f"Include {' '.join([include] * 30)}\n")
    (tmp_path / "l8.conf").write_text("Host x\n  Port 22\n")
    with pytest.raises(ConfigError, match="more than 100,000 lines"):
        holds(lambda p: resolve(_spec("x"), p), tmp_path / "config", (), seconds=20)


def test_include_loop_through_a_glob_terminates(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(f"Include {tmp_path}/*\nHost gpu1\n  Port 22\n")
    with pytest.raises(ConfigError, match="nested deeper than 16"):
        holds(lambda p: resolve(_spec("gpu1"), p), tmp_path / "config", ())
