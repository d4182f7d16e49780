"""~/.ssh/config → ConnectPlan: overrides, ProxyJump, ProxyCommand, Include, errors."""

from __future__ import annotations

import getpass
import shutil
import subprocess
from pathlib import Path

import pytest

from ssh_backend.config import ConfigError, Hop, list_aliases, resolve, resolve_aliases
from ssh_backend.hostspec import HostSpec


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _paramiko_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the fallback used without an ssh client; the ssh -G path is
    compared with ssh itself in tests/integration/test_ssh_config_corpus.py."""
    monkeypatch.setattr("ssh_backend.ssh_g.find_ssh", lambda: None)


@pytest.fixture
def ssh_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Relative Include paths are read from ~/.ssh, as OpenSSH does.
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path / ".ssh"


def test_alias_takes_everything_from_its_block(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", """
Host gpu1
    HostName 10.0.0.5
    Port 2222
    User alice
    IdentityFile ~/.ssh/lab_key
    IdentitiesOnly yes
Host *
    User fallback
""")
    plan = resolve(HostSpec(name="GPU one", ssh_alias="gpu1"), config)
    assert plan.target == Hop(
        hostname="10.0.0.5", port=2222, user="alice",
        key_filenames=(str(Path("~/.ssh/lab_key").expanduser()),), identities_only=True,
    )
    assert plan.jumps == () and plan.proxy_command is None


def test_spec_fields_override_the_config(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", "Host gpu1\n HostName a\n Port 2222\n User alice\n"
                                      " IdentityFile /k1\n")
    spec = HostSpec(name="x", ssh_alias="gpu1", hostname="b", port=22, user="bob",
                    key_filename="/k2")
    assert resolve(spec, config).target == Hop("b", 22, "bob", ("/k2",), False)


def test_no_config_means_plain_defaults(tmp_path: Path) -> None:
    plan = resolve(HostSpec(name="x", hostname="10.1.1.1"), None)
    assert plan.target == Hop("10.1.1.1", 22, getpass.getuser(), (), False)
    # A missing file is an empty config, as for ssh.
    assert resolve(HostSpec(name="x", hostname="h"), tmp_path / "absent").target.port == 22


def test_proxyjump_chain_resolves_each_jump_through_the_config(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", """
Host bastion
    HostName bastion.example.org
    User jumper
    Port 2200
    IdentityFile /keys/bastion
Host inner
    HostName 10.0.0.9
    ProxyJump bastion,carol@relay:2022
""")
    plan = resolve(HostSpec(name="inner", ssh_alias="inner", user="me"), config)
    assert plan.target.hostname == "10.0.0.9" and plan.target.user == "me"
    assert plan.jumps == (
        Hop("bastion.example.org", 2200, "jumper", ("/keys/bastion",), False),
        Hop("relay", 2022, "carol", (), False),
    )


def test_spec_proxy_jump_overrides_and_accepts_uri_and_ipv6(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", "Host t\n ProxyJump nowhere\n")
    spec = HostSpec(name="t", ssh_alias="t", proxy_jump=("ssh://u@[::1]:2201", "[fe80::1]"))
    jumps = resolve(spec, config).jumps
    assert [(j.hostname, j.port, j.user) for j in jumps] == [
        ("::1", 2201, "u"), ("fe80::1", 22, getpass.getuser())]


def test_proxyjump_none_and_bad_jump(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", "Host a\n ProxyJump none\nHost b\n ProxyJump x:notaport\n")
    assert resolve(HostSpec(name="a", ssh_alias="a"), config).jumps == ()
    with pytest.raises(ConfigError, match="bad port 'notaport'"):
        resolve(HostSpec(name="b", ssh_alias="b"), config)
    huge = write(ssh_dir / "huge", "Host c\n ProxyJump x:" + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match="bad port '999"):
        resolve(HostSpec(name="c", ssh_alias="c"), huge)


def test_proxycommand_tokens_are_expanded(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config",
                   "Host far\n HostName far.lan\n User zed\n Port 2022\n"
                   " ProxyCommand nc -X connect -x proxy:3128 %h %p # as %r\n")
    plan = resolve(HostSpec(name="far", ssh_alias="far"), config)
    assert plan.proxy_command == "nc -X connect -x proxy:3128 far.lan 2022 # as zed"
    # A ProxyJump given by the user wins over the config's ProxyCommand.
    jumped = resolve(HostSpec(name="far", ssh_alias="far", proxy_jump=("j",)), config)
    assert jumped.proxy_command is None and jumped.jumps[0].hostname == "j"


def test_include_globs_relative_paths_and_missing_files(ssh_dir: Path) -> None:
    write(ssh_dir / "conf.d" / "10-lab.conf", "Host lab1 lab2\n User labuser\n")
    write(ssh_dir / "conf.d" / "20-home.conf", "Host nas\n HostName 192.168.1.2\n")
    config = write(ssh_dir / "config", "Include conf.d/*.conf ~/does/not/exist.conf\n"
                                      "Host *\n User everyone\n")
    assert resolve(HostSpec(name="x", ssh_alias="lab2"), config).target.user == "labuser"
    assert resolve(HostSpec(name="x", ssh_alias="nas"), config).target.hostname == "192.168.1.2"
    assert resolve(HostSpec(name="x", ssh_alias="other"), config).target.user == "everyone"
    assert list_aliases(config) == ["lab1", "lab2", "nas"]


def test_include_inside_a_block_keeps_the_rest_of_the_block_conditional(ssh_dir: Path) -> None:
    write(ssh_dir / "extra", "Port 2022\nHost elsewhere\n User nobody\n")
    config = write(ssh_dir / "config", "Host box\n Include extra\n User boxuser\n")
    box = resolve(HostSpec(name="b", ssh_alias="box"), config).target
    assert (box.port, box.user) == (2022, "boxuser")
    other = resolve(HostSpec(name="o", ssh_alias="other"), config).target
    assert (other.port, other.user) == (22, getpass.getuser())


def test_include_loop_is_an_error_not_a_crash(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", "Include config\n")
    with pytest.raises(ConfigError, match="nested deeper than 16"):
        resolve(HostSpec(name="x", ssh_alias="x"), config)


def test_list_aliases_skips_patterns_and_negations(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", """
Host gpu-a gpu-b *.lab !gpu-c gpu?
Host "quoted name" gpu-a
Match host foo
    User x
Host *
""")
    assert list_aliases(config) == ["gpu-a", "gpu-b", "quoted name"]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("Host a\n  HostName b\n  justakeyword\n", 3, "no argument after keyword"),
        ("Host a\n  Port 99999\n", 2, "Port must be 1-65535"),
        ("Host a\n  Port " + "1" * 5000 + "\n", 2, "Port must be 1-65535"),
        ('\n\nHost "unterminated\n', 3, "invalid quotes"),
        ("Match all host x\n", 1, "Match does not allow 'all'"),
        ("Include\n", 1, 'no argument after keyword "include"'),
    ],
)
def test_malformed_config_names_file_and_line(
    ssh_dir: Path, text: str, line: int, problem: str
) -> None:
    config = write(ssh_dir / "config", text)
    with pytest.raises(ConfigError) as info:
        resolve(HostSpec(name="x", ssh_alias="a"), config)
    assert str(info.value).startswith(f"{config}:{line}: ")
    assert problem in str(info.value)
    assert (info.value.path, info.value.line) == (str(config), line)


def test_error_in_an_included_file_names_that_file(ssh_dir: Path) -> None:
    bad = write(ssh_dir / "bad.conf", "# fine\nHost x\n  Port -1\n")
    config = write(ssh_dir / "config", "Include bad.conf\n")
    with pytest.raises(ConfigError, match=f"^{bad}:3: Port must be"):
        resolve_aliases(config)


def test_unreadable_config_is_a_config_error(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", "")
    config.write_bytes(b"Host \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        list_aliases(config)


def test_resolve_aliases_agrees_with_ssh_G(ssh_dir: Path) -> None:
    ssh = shutil.which("ssh")
    assert ssh, "ssh is not installed (apt-get install openssh-client)"
    # Absolute Include paths: ssh -G -F resolves relative ones against the real ~/.ssh.
    write(ssh_dir / "conf.d" / "lab.conf", "Host gpu3\n HostName 10.0.0.3\n User carol\n")
    config = write(ssh_dir / "config", f"Include {ssh_dir}/conf.d/*.conf\n"
                   "Host gpu1 gpu2\n HostName %h.lab.example\n Port 2222\n"
                   "Match host gpu2\n User never\n"  # matched against the HostName, as ssh does
                   "Match originalhost gpu2\n User bob\n"
                   "Host *\n User alice\n")
    found = resolve_aliases(config)
    assert [entry.alias for entry in found] == ["gpu3", "gpu1", "gpu2"]
    for entry in found:
        assert entry.plan is not None and entry.error is None
        shown = subprocess.run([ssh, "-G", "-F", str(config), entry.alias],
                               capture_output=True, text=True, check=True,
                               stdin=subprocess.DEVNULL).stdout
        options = dict(line.split(" ", 1) for line in shown.splitlines() if " " in line)
        target = entry.plan.target
        assert (target.user, target.hostname, str(target.port)) == (
            options["user"], options["hostname"], options["port"])


def test_an_alias_that_cannot_be_resolved_does_not_hide_the_others(ssh_dir: Path) -> None:
    config = write(ssh_dir / "config", "Host gpu4\n ProxyJump jump:99999\nHost gpu5\n Port 2\n")
    gpu4, gpu5 = resolve_aliases(config)
    assert gpu4.plan is None and gpu4.error is not None and "ProxyJump" in str(gpu4.error)
    assert gpu5.plan is not None and gpu5.plan.target.port == 2
