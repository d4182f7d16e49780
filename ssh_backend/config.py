"""Turn an ssh config plus a HostSpec into a connect plan: target hop, jump hops, proxy.

Each host name is resolved by ``ssh -G`` when an OpenSSH client is installed (ssh's own
answer), else by paramiko's ``SSHConfig`` (``hop_resolvers``); the HostSpec's explicit
fields then override what the config says. Listing the aliases reads the files
(``sshconf_lines``): ssh has no listing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ssh_backend import ssh_g
from ssh_backend.config_paramiko import is_port
from ssh_backend.hop_resolvers import BY_PARAMIKO, HopResolver, Resolved, resolver_for
from ssh_backend.hostspec import HostSpec
from ssh_backend.ssh_aliases import aliases
from ssh_backend.sshconf_lines import ConfigError, load_lines

__all__ = ["AliasPlan", "ConfigError", "ConnectPlan", "Hop", "is_port", "list_aliases",
           "resolve", "resolve_aliases"]

# ssh -G runs take ~10 ms each; a few at once keep a long listing short on a small CPU.
_LISTING_WORKERS = 4


@dataclass(frozen=True, slots=True)
class Hop:
    """One SSH server to authenticate to: a jump host or the target."""

    hostname: str
    port: int = 22
    user: str = ""
    key_filenames: tuple[str, ...] = ()
    identities_only: bool = False

    @property
    def label(self) -> str:
        return f"{self.hostname}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectPlan:
    """How to reach a host: connect to ``jumps[0]`` (or run ``proxy_command``), hop on.

    ``resolved_by`` names what read the ssh config: ``"ssh -G"`` or ``"paramiko"``.
    """

    target: Hop
    jumps: tuple[Hop, ...] = ()
    proxy_command: str | None = None
    resolved_by: str = BY_PARAMIKO


@dataclass(frozen=True, slots=True)
class AliasPlan:
    """A concrete ``Host`` alias and how it is reached, or why the config cannot say."""

    alias: str
    plan: ConnectPlan | None
    error: ConfigError | None = None


def list_aliases(ssh_config: Path) -> list[str]:
    """Concrete ``Host`` names (no wildcards or negations), in file order, once each."""
    return aliases(load_lines(ssh_config))


def resolve_aliases(ssh_config: Path, ssh: str | bool | None = True) -> list[AliasPlan]:
    """Every concrete alias of ``ssh_config`` with its plan, as ``ssh -G alias`` sees it.

    An alias the config cannot resolve carries its ConfigError; a config that cannot be
    read at all (or that ssh refuses at a line) raises it. ``ssh``: True finds
    the client on PATH, None forces the paramiko fallback. Resolving may run the user's
    ``Match exec`` commands or look names up in DNS: keep it off a GUI thread.
    """
    names = list_aliases(ssh_config)
    resolver = resolver_for(ssh_config, _ssh(ssh))

    def one(alias: str) -> AliasPlan:
        spec = HostSpec(name=alias, ssh_alias=alias)
        try:
            return AliasPlan(alias, _plan(spec, resolver, str(ssh_config)))
        except ConfigError as exc:
            return AliasPlan(alias, None, exc)

    with ThreadPoolExecutor(_LISTING_WORKERS, thread_name_prefix="labdeck-ssh-G") as pool:
        found = list(pool.map(one, names))
    # An error naming a line is ssh refusing the file (it checks every line, whatever the
    # host): the config's problem, not one alias's.
    for entry in found:
        if entry.error is not None and entry.error.line > 0:
            raise entry.error
    return found


def resolve(spec: HostSpec, ssh_config: Path | None,
            ssh: str | bool | None = True) -> ConnectPlan:
    """The hops to ``spec``; ``ssh_config=None`` reads no config file at all.

    ``ssh`` as for ``resolve_aliases``. Raises ConfigError for a config or jump
    specification that cannot be used.
    """
    path = ssh_config.expanduser() if ssh_config is not None else None
    return _plan(spec, resolver_for(path, _ssh(ssh)), str(ssh_config or "host settings"))


def _ssh(ssh: str | bool | None) -> str | None:
    if ssh is True:
        return ssh_g.find_ssh()
    return ssh or None


def _split_jump(text: str) -> tuple[str | None, str, int | None]:
    """``[ssh://][user@]host[:port]`` (IPv6 as ``[::1]:22``) → user, host, port."""
    where = text.strip()
    if where.startswith("ssh://"):
        where = where[len("ssh://") :].rstrip("/")
    user: str | None = None
    if "@" in where:
        user, where = where.rsplit("@", 1)
    port: int | None = None
    if where.startswith("["):
        host, _, rest = where[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif where.count(":") == 1:
        host, port_text = where.split(":")
        port = _port(port_text, text)
    else:
        host = where
    if not host:
        raise ValueError(f"jump host {text!r} has no host name")
    return user or None, host, port


def _port(value: str, where: str) -> int:
    if not is_port(value):
        raise ValueError(f"bad port {value!r} in {where!r}")
    return int(value)


def _hop(resolver: HopResolver, name: str, user: str | None, port: int | None,
         key_filename: str | None = None,
         hostname: str | None = None) -> tuple[Hop, Resolved]:
    """One hop, explicit values first, then the config's for ``name`` (also returned)."""
    found = resolver.resolve(name, user, port)
    hop = Hop(
        hostname=hostname or found.hostname,
        port=port or found.port,
        user=user or found.user,
        key_filenames=(key_filename,) if key_filename else found.identity_files,
        identities_only=found.identities_only,
    )
    return hop, found


def _plan(spec: HostSpec, resolver: HopResolver, where: str) -> ConnectPlan:
    name = spec.ssh_alias or spec.hostname or spec.name
    target, found = _hop(resolver, name, spec.user, spec.port, spec.key_filename,
                         spec.hostname)
    proxy_command = None
    if spec.proxy_jump:
        jump_texts: list[str] = list(spec.proxy_jump)
    else:
        # ProxyJump and ProxyCommand exclude each other; the first one set wins in ssh.
        jump_texts = found.proxy_jump.split(",") if found.proxy_jump else []
        proxy_command = None if jump_texts else found.proxy_command
    jumps: list[Hop] = []
    for text in jump_texts:
        try:
            user, host, port = _split_jump(text)
        except ValueError as exc:
            raise ConfigError(where, 0, f"ProxyJump: {exc}") from None
        jumps.append(_hop(resolver, host, user, port)[0])
    return ConnectPlan(target=target, jumps=tuple(jumps), proxy_command=proxy_command,
                       resolved_by=resolver.resolved_by)
