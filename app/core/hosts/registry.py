"""The host registry's rules: valid names and SSH targets, specs from user input, imports.

Everything a user types about a host passes through here before it reaches the store or
an SSH connection: a target that starts with ``-`` could become an ssh option, and one
with shell metacharacters has no business in a host name, so both are refused with a
``ValueError`` whose message says what is wrong and how to write it instead.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core import paths
from app.core.store import HostExistsError, Store
from ssh_backend import config as ssh_config_mod
from ssh_backend.hostspec import DEFAULT_INTERVAL_S, MIN_INTERVAL_S, AgentOptions, HostSpec

MAX_SIM_GPUS = 64

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# DNS names, ssh_config aliases and IPv4 literals; never starting with "-" (ssh option).
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}")
# Every character a target may contain at all: anything else is refused up front.
_TARGET_CHARS = re.compile(r"[A-Za-z0-9._@:\[\]%-]*")

TARGET_FORM = "[user@]host[:port]"


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    # One sentence per alias that could not be imported.
    errors: list[str] = field(default_factory=list)
    # Where each added alias leads (``ConfigHost.target``), to show what was added.
    targets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfigHost:
    """One concrete ``Host`` alias of an ssh config, with where the config sends it.

    ``user``, ``hostname`` and ``port`` are what ``ssh -G alias`` would use; they are
    empty when the config cannot resolve the alias. ``problem`` says why the alias cannot
    become a Labdeck host (and what to do instead); ``known`` marks one already added.
    """

    alias: str
    user: str = ""
    hostname: str = ""
    port: int | None = None
    problem: str | None = None
    known: bool = False
    # What read the config for this alias: "ssh -G" (OpenSSH itself) or "paramiko".
    resolved_by: str = ""

    @property
    def target(self) -> str:
        """``user@hostname:port``, or '' when the config could not resolve the alias."""
        return format_ssh_target(self.user, self.hostname, self.port) if self.hostname else ""


def validate_host_name(name: str) -> str:
    """Return ``name`` if it is a valid Labdeck host name, else raise ValueError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"host name {_show(name)} is not valid: use 1 to 63 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def parse_ssh_target(target: str) -> tuple[str | None, str, int | None]:
    """Split ``[user@]host[:port]`` (IPv6 as ``[::1]:22``) into (user, host, port).

    Raises ValueError with a user-facing message for anything else.
    """
    if not isinstance(target, str):
        raise ValueError(f"the SSH target must be text like {TARGET_FORM}")
    if not target:
        raise ValueError(f"the SSH target is empty; write it as {TARGET_FORM}")
    if any(ch.isspace() for ch in target):
        raise ValueError(
            f"the SSH target {_show(target)} contains spaces; write it as {TARGET_FORM}"
        )
    if not _TARGET_CHARS.fullmatch(target):
        bad = next(ch for ch in target if not _TARGET_CHARS.fullmatch(ch))
        raise ValueError(
            f"the SSH target {_show(target)} contains {_show(bad)}, which is not allowed; "
            f"write it as {TARGET_FORM}"
        )
    user: str | None = None
    rest = target
    if "@" in target:
        user, _, rest = target.partition("@")
        if "@" in rest:
            raise ValueError(f"the SSH target {_show(target)} has more than one '@'")
        if not user:
            raise ValueError(f"the SSH target {_show(target)} has an empty user name before '@'")
        if not _USER_RE.fullmatch(user):
            raise ValueError(
                f"user name {_show(user)} is not valid: use letters, digits, '.', '_' or '-', "
                "not starting with '-' or '.'"
            )
    host, port = _split_host_port(rest, target)
    return user, host, port


def format_ssh_target(user: str | None, host: str, port: int | None) -> str:
    """The inverse of parse_ssh_target: ``user@host:port``, IPv6 hosts in brackets."""
    shown = f"[{host}]" if ":" in host else host
    if port is not None and ":" in host:
        shown = f"[{host}]:{port}"
    elif port is not None:
        shown = f"{host}:{port}"
    return f"{user}@{shown}" if user else shown


def normalize_jump(hop: str) -> str:
    """A ProxyJump hop as typed → its canonical ``user@host:port`` form (validated)."""
    user, host, port = parse_ssh_target(hop)
    return format_ssh_target(user, host, port)


def check_key_file(key: str | os.PathLike[str]) -> str:
    """Return the absolute path of a readable private key file, else raise ValueError."""
    path = Path(key).expanduser()
    shown = str(key)
    if not path.exists():
        raise ValueError(
            f"key file {shown} does not exist; give the path of your private key "
            "(for example ~/.ssh/id_ed25519)"
        )
    if not path.is_file():
        raise ValueError(f"key file {shown} is not a file; give the path of your private key")
    if path.suffix == ".pub":
        raise ValueError(
            f"{shown} is a public key; give the private key instead ({shown[:-4]})"
        )
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(
            f"key file {shown} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    return os.path.abspath(path)


def spec_from_args(
    name: str,
    ssh_target: str | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    jump: Sequence[str] = (),
    ssh_alias: str | None = None,
    local: bool = False,
    sim_gpus: int | None = None,
    interval_s: float | None = None,
) -> HostSpec:
    """Validate what the user typed about a host and build its HostSpec.

    ``sim_gpus`` selects the simulated GPU backend with that many GPUs (tests, demo lab).
    """
    validate_host_name(name)
    if local and (ssh_target or ssh_alias or jump or key):
        raise ValueError("a local host takes no SSH target, alias, key or jump host")
    if not local and not ssh_target and not ssh_alias:
        raise ValueError(
            f"say how to reach host '{name}': an SSH target ({TARGET_FORM}), "
            "an alias from ~/.ssh/config, or local"
        )
    user, hostname, port = parse_ssh_target(ssh_target) if ssh_target else (None, None, None)
    if ssh_alias is not None and (not _HOST_RE.fullmatch(ssh_alias) or ":" in ssh_alias):
        raise ValueError(f"ssh config alias {_show(ssh_alias)} is not a valid Host name")
    hops = tuple(normalize_jump(hop) for hop in jump)
    key_filename = check_key_file(key) if key is not None else None
    agent = AgentOptions(interval_s=_interval(interval_s))
    if sim_gpus is not None:
        if isinstance(sim_gpus, bool) or not 1 <= sim_gpus <= MAX_SIM_GPUS:
            raise ValueError(f"the number of simulated GPUs must be 1 to {MAX_SIM_GPUS}")
        agent = AgentOptions(interval_s=agent.interval_s, backend="sim", sim_gpus=sim_gpus)
    return HostSpec(
        name=name,
        hostname=hostname,
        port=port,
        user=user,
        key_filename=key_filename,
        ssh_alias=ssh_alias,
        proxy_jump=hops,
        local=local,
        agent=agent,
    )


def describe_target(spec: HostSpec) -> str:
    """How a host is reached, in one short phrase (``user@host:port``, ``alias``, local)."""
    if spec.local:
        return "local"
    if spec.hostname:
        target = format_ssh_target(spec.user, spec.hostname, spec.port)
        return f"{target} (alias {spec.ssh_alias})" if spec.ssh_alias else target
    return f"alias {spec.ssh_alias}" if spec.ssh_alias else "?"


def known_names(specs: Iterable[HostSpec]) -> set[str]:
    """Names and ssh aliases already in use: an alias in here is not imported again."""
    names: set[str] = set()
    for spec in specs:
        names.update(n for n in (spec.name, spec.ssh_alias) if n)
    return names


def ssh_config_hosts(ssh_config_path: str | Path | None = None,
                     known: Collection[str] = ()) -> list[ConfigHost]:
    """The concrete aliases of an ssh config (default ``~/.ssh/config``, ``Include``s
    followed), in file order, each resolved as ssh would and checked as a host name.

    A config that cannot be read raises ``ssh_backend.config.ConfigError`` (its message
    names file and line). It may look names up in DNS: keep it off a GUI thread.
    """
    path = Path(ssh_config_path).expanduser() if ssh_config_path else paths.user_ssh_config()
    found: list[ConfigHost] = []
    for entry in ssh_config_mod.resolve_aliases(path):
        hop = entry.plan.target if entry.plan is not None else None
        found.append(ConfigHost(
            entry.alias,
            user=hop.user if hop else "",
            hostname=hop.hostname if hop else "",
            port=hop.port if hop else None,
            problem=_import_problem(entry),
            known=entry.alias in known,
            resolved_by=entry.plan.resolved_by if entry.plan is not None else "",
        ))
    return found


def import_from_ssh_config(store: Store, ssh_config_path: str | Path | None = None) -> ImportResult:
    """Add a host for every alias ``ssh_config_hosts`` lists as importable (name = alias).

    Aliases already imported (by name or by alias) are skipped. A config that cannot be
    read raises ``ssh_backend.config.ConfigError`` (its message names file and line).
    """
    result = ImportResult()
    for host in ssh_config_hosts(ssh_config_path, known_names(store.hosts())):
        if host.known:
            result.skipped_existing.append(host.alias)
            continue
        if host.problem is not None:
            result.errors.append(host.problem)
            continue
        try:
            store.add_host(HostSpec(name=host.alias, ssh_alias=host.alias))
        except HostExistsError:
            result.skipped_existing.append(host.alias)
        else:
            result.added.append(host.alias)
            result.targets[host.alias] = host.target
    return result


# -- helpers -------------------------------------------------------------------------
def _import_problem(entry: ssh_config_mod.AliasPlan) -> str | None:
    try:
        validate_host_name(entry.alias)
    except ValueError:
        return (f"alias {_show(entry.alias)} is not a valid Labdeck host name; add it by "
                "hand with: labdeck hosts add NAME --ssh-alias ALIAS")
    if entry.error is not None:
        return f"alias {_show(entry.alias)} cannot be resolved: {entry.error}"
    return None


def _split_host_port(rest: str, target: str) -> tuple[str, int | None]:
    if rest.startswith("["):
        inner, sep, after = rest[1:].partition("]")
        if not sep:
            raise ValueError(f"the SSH target {_show(target)} has '[' without a closing ']'")
        host = _ipv6(inner, target)
        if not after:
            return host, None
        if not after.startswith(":"):
            raise ValueError(f"the SSH target {_show(target)} has text after ']' that is not :port")
        return host, _port(after[1:], target)
    if "[" in rest or "]" in rest or ("%" in rest and rest.count(":") < 2):
        raise ValueError(
            f"the SSH target {_show(target)} is malformed; write IPv6 addresses in brackets, "
            "as [::1]:22"
        )
    if rest.count(":") >= 2:
        return _ipv6(rest, target), None  # a bare IPv6 address cannot carry a port
    host, sep, port_text = rest.partition(":")
    if not host:
        raise ValueError(f"the SSH target {_show(target)} has no host name")
    if not _HOST_RE.fullmatch(host):
        raise ValueError(
            f"host {_show(host)} is not valid: use letters, digits, '.', '_' or '-', "
            "not starting with '-' or '.'"
        )
    return host, _port(port_text, target) if sep else None


def _ipv6(text: str, target: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(
            f"the SSH target {_show(target)} does not hold a valid IPv6 address"
        ) from None


def _port(text: str, target: str) -> int:
    if not ssh_config_mod.is_port(text):
        raise ValueError(
            f"the port in {_show(target)} must be a number from 1 to 65535, not {_show(text)}"
        )
    return int(text)


def _interval(interval_s: float | None) -> float:
    if interval_s is None:
        return DEFAULT_INTERVAL_S
    if not interval_s >= MIN_INTERVAL_S or interval_s > 3600:
        raise ValueError(
            f"the sampling interval must be between {MIN_INTERVAL_S:g} s and 3600 s"
        )
    return float(interval_s)


def _show(value: object) -> str:
    """Quote user input for a message, escaping control characters and keeping it short."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 80 else text[:77] + "...'"
