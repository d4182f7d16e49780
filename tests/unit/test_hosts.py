"""Host names, SSH targets, specs from user input, and importing a real ssh config."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.hosts.registry import (
    ConfigHost,
    check_key_file,
    describe_target,
    format_ssh_target,
    import_from_ssh_config,
    normalize_jump,
    parse_ssh_target,
    spec_from_args,
    ssh_config_hosts,
    validate_host_name,
)
from app.core.store import Store
from ssh_backend.config import ConfigError
from ssh_backend.hostspec import HostSpec


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("gpu1", (None, "gpu1", None)),
        ("alice@gpu1", ("alice", "gpu1", None)),
        ("alice@gpu1.lab.example.org:2222", ("alice", "gpu1.lab.example.org", 2222)),
        ("10.0.0.7:22", (None, "10.0.0.7", 22)),
        ("[::1]:2200", (None, "::1", 2200)),
        ("bob@[2001:db8::7]", ("bob", "2001:db8::7", None)),
        ("[2001:DB8:0::7]:65535", (None, "2001:db8::7", 65535)),
        ("fe80::1", (None, "fe80::1", None)),
        ("svc_user@host_alias", ("svc_user", "host_alias", None)),
    ],
)
def test_valid_targets(target: str, expected: tuple[str | None, str, int | None]) -> None:
    assert parse_ssh_target(target) == expected


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "is empty"),
        ("alice@ gpu1", "contains spaces"),
        ("gpu1\n", "contains spaces"),
        ("gpu1;rm -rf ~", "contains spaces"),
        ("gpu1;reboot", "contains ';'"),
        ("$(reboot)", "contains '$'"),
        ("gpu1`id`", "contains '`'"),
        ("gpu1|nc", "contains '|'"),
        ("-oProxyCommand=sh", "contains '='"),
        ("-gpu1", "not starting with '-'"),
        ("alice@-oProxyCommand", "not starting with '-'"),
        ("-alice@gpu1", "user name '-alice' is not valid"),
        ("gpu1:0", "number from 1 to 65535"),
        ("gpu1:65536", "number from 1 to 65535"),
        ("gpu1:22a", "number from 1 to 65535"),
        ("gpu1:", "number from 1 to 65535"),
        ("gpu1:" + "9" * 5000, "number from 1 to 65535"),
        ("@gpu1", "empty user name"),
        ("a@b@c", "more than one '@'"),
        ("[::1", "without a closing ']'"),
        ("[::1]x", "not :port"),
        ("[gpu1]:22", "valid IPv6"),
        ("gpu[1]", "malformed"),
        ("gpu1%eth0", "malformed"),
        (":22", "no host name"),
        ("gpu1:22:33", "valid IPv6"),
        ("gpu\u00e91", "contains"),
    ],
)
def test_bad_targets_say_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("|", r"\|")) as info:
        parse_ssh_target(target)
    assert "\n" not in str(info.value)  # one line, for the CLI's one-line errors


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_hostile_strings_only_ever_raise_value_error(text: str) -> None:
    try:
        user, host, port = parse_ssh_target(text)
    except ValueError:
        return
    # Whatever is accepted is safe to hand to ssh/paramiko and survives a round trip.
    assert not host.startswith("-") and not (user or "").startswith("-")
    assert not set(host + (user or "")) & set(" ;|&$`'\"\\<>(){}*?!\n\t=/")
    assert port is None or 1 <= port <= 65535
    assert parse_ssh_target(format_ssh_target(user, host, port)) == (user, host, port)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}@[a-z0-9][a-z0-9.-]{0,20}:[0-9]{1,5}",
                     fullmatch=True))
def test_well_formed_targets_parse_or_fail_only_on_port(text: str) -> None:
    user, _, rest = text.partition("@")
    host, _, port = rest.partition(":")
    if 1 <= int(port) <= 65535:
        assert parse_ssh_target(text) == (user, host, int(port))
    else:
        with pytest.raises(ValueError, match="port"):
            parse_ssh_target(text)


@pytest.mark.parametrize("name", ["gpu1", "A", "box-2.lab_x", "9lives", "a" * 63])
def test_valid_host_names(name: str) -> None:
    assert validate_host_name(name) == name


@pytest.mark.parametrize("name", ["", "-gpu", ".gpu", "gpu 1", "gpu/1", "a" * 64, "gpu;x", "é"])
def test_invalid_host_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"host name .* is not valid"):
        validate_host_name(name)


def test_format_and_jump_normalisation() -> None:
    assert format_ssh_target(None, "::1", 22) == "[::1]:22"
    assert format_ssh_target("u", "::1", None) == "u@[::1]"
    assert format_ssh_target("u", "h", 2) == "u@h:2"
    assert normalize_jump("bob@[0:0::1]:2200") == "bob@[::1]:2200"
    with pytest.raises(ValueError, match="contains"):
        normalize_jump("bastion -W x")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_test"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    path.chmod(0o600)
    return path


def test_spec_from_args_builds_a_full_spec(key: Path) -> None:
    spec = spec_from_args(
        "gpu1", "alice@10.0.0.7:2222", str(key), jump=["bob@bastion", "[::1]:2200"],
        sim_gpus=4, interval_s=0.5,
    )
    assert spec == HostSpec(
        name="gpu1", hostname="10.0.0.7", port=2222, user="alice", key_filename=str(key),
        proxy_jump=("bob@bastion", "[::1]:2200"), agent=spec.agent,
    )
    assert spec.agent.backend == "sim" and spec.agent.sim_gpus == 4
    assert spec.agent.interval_s == 0.5 and spec.simulated
    assert describe_target(spec) == "alice@10.0.0.7:2222"
    plain = spec_from_args("box", ssh_alias="box")
    assert plain.ssh_alias == "box" and plain.agent.backend == "auto" and not plain.simulated
    assert describe_target(plain) == "alias box"
    assert describe_target(spec_from_args("me", local=True)) == "local"


def test_key_path_is_checked(tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"key file .*nope does not exist"):
        spec_from_args("gpu1", "gpu1", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="is not a file"):
        check_key_file(tmp_path)
    pub = tmp_path / "id_test.pub"
    pub.write_text("ssh-ed25519 AAAA x\n")
    with pytest.raises(ValueError, match=r"is a public key; give the private key instead"):
        check_key_file(pub)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_key_file("~/id_test") == str(key)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name", "ssh_target": "h"}, "host name 'bad name' is not valid"),
        ({"name": "gpu1"}, "say how to reach host 'gpu1'"),
        ({"name": "gpu1", "ssh_target": "h", "local": True}, "local host takes no SSH"),
        ({"name": "gpu1", "ssh_target": "h", "sim_gpus": 0}, "simulated GPUs must be 1 to"),
        ({"name": "gpu1", "ssh_target": "h", "sim_gpus": 65}, "simulated GPUs must be 1 to"),
        ({"name": "gpu1", "ssh_target": "h", "interval_s": 0.01}, "sampling interval"),
        ({"name": "gpu1", "ssh_target": "h", "interval_s": float("nan")}, "sampling interval"),
        ({"name": "gpu1", "ssh_target": "h", "jump": ["x;y"]}, "contains ';'"),
        ({"name": "gpu1", "ssh_alias": "-oX"}, "alias '-oX' is not a valid"),
    ],
)
def test_spec_from_args_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec_from_args(**kwargs)  # type: ignore[arg-type]


def test_import_from_a_real_ssh_config_with_include(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "home"))
    conf_d = tmp_path / "ssh" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "lab.conf").write_text("Host gpu3 gpu4\n    HostName 10.0.0.3\n")
    config = tmp_path / "ssh" / "config"
    config.write_text(
        f"Include {conf_d}/*.conf\n"  # ssh reads a relative one from ~/.ssh
        "Host *.lab !bastion\n    User alice\n\n"
        "Host gpu1\n    HostName gpu1.lab\n    Port 2222\n\n"
        "Host gpu2 old\n    HostName 10.0.0.2\n\n"
        "Host bad$name\n    HostName 10.0.0.9\n\n"
        "Host *\n    ServerAliveInterval 30\n"
    )
    with Store.open() as store:
        store.add_host(HostSpec(name="old", hostname="x"))
        store.add_host(HostSpec(name="renamed", ssh_alias="gpu4"))
        result = import_from_ssh_config(store, config)
        assert result.added == ["gpu3", "gpu1", "gpu2"]
        me = getpass.getuser()  # no block gives these aliases a User: ssh logs in as you
        assert result.targets == {"gpu3": f"{me}@10.0.0.3:22",
                                  "gpu1": f"{me}@gpu1.lab:2222", "gpu2": f"{me}@10.0.0.2:22"}
        assert result.skipped_existing == ["gpu4", "old"]
        assert len(result.errors) == 1 and "'bad$name'" in result.errors[0]
        assert store.host("gpu1") == HostSpec(name="gpu1", ssh_alias="gpu1")
        # Importing again adds nothing: the registry is idempotent over the same file.
        again = import_from_ssh_config(store, config)
        assert again.added == [] and set(again.skipped_existing) == {
            "gpu1", "gpu2", "gpu3", "gpu4", "old"
        }


def test_an_alias_the_config_cannot_resolve_is_reported_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "home"))
    # The paramiko fallback: ssh itself would refuse the whole file for this line.
    monkeypatch.setattr("ssh_backend.ssh_g.find_ssh", lambda: None)
    config = tmp_path / "config"
    config.write_text("Host gpu1\n    ProxyJump jump:99999\nHost gpu2\n    User bob\n")
    assert ssh_config_hosts(config, known={"gpu2"}) == [
        ConfigHost("gpu1", problem=f"alias 'gpu1' cannot be resolved: {config}:0: ProxyJump: "
                   "bad port '99999' in 'jump:99999'"),
        ConfigHost("gpu2", "bob", "gpu2", 22, known=True, resolved_by="paramiko"),
    ]
    with Store.open() as store:
        result = import_from_ssh_config(store, config)
        assert result.added == ["gpu2"] and result.errors == [
            ssh_config_hosts(config)[0].problem]
        assert store.host("gpu1") is None


def test_import_reports_a_broken_config_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "home"))
    config = tmp_path / "config"
    config.write_text("Host gpu1\n    HostName gpu1.lab\n    Port notanumber\n")
    with Store.open() as store, pytest.raises(ConfigError) as info:
        import_from_ssh_config(store, config)
    assert f"{config}:3" in str(info.value)
