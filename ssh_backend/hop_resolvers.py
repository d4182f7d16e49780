"""Where the ssh config sends one host name: by ``ssh -G``, or by paramiko without ssh.

Both answer the same question (``Resolved``) so the plan built from it does not depend on
which one answered; ``resolved_by`` says which did, for the host's details.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ssh_backend import config_paramiko, ssh_g
from ssh_backend.ssh_tokens import TokenContext, expand_identity_file, expand_proxy_command
from ssh_backend.sshconf_lines import ConfigError

BY_SSH = "ssh -G"
BY_PARAMIKO = "paramiko"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The settings of one host name that Labdeck uses to connect."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()  # expanded; () means ssh's default key files
    identities_only: bool = False
    proxy_jump: str = ""  # as written: hops separated by commas
    proxy_command: str | None = None  # expanded


class HopResolver(Protocol):
    resolved_by: str

    def resolve(self, name: str, user: str | None, port: int | None) -> Resolved: ...


class SshGResolver:
    """Asks ``ssh -G``: every OpenSSH rule applies, as for a plain ``ssh name``."""

    resolved_by = BY_SSH

    def __init__(self, ssh: str, config: Path | None) -> None:
        self.ssh = ssh
        self.config = config

    def resolve(self, name: str, user: str | None, port: int | None) -> Resolved:
        options = ssh_g.ssh_options(self.ssh, self.config, name, user=user, port=port)

        def first(key: str) -> str:
            value = options.get(key, [""])[0]
            return "" if value.lower() == "none" else value

        port_text = first("port") or "22"
        if not config_paramiko.is_port(port_text):
            raise self._error(f"ssh -G gave port {port_text!r} for {name!r}")
        jump = first("proxyjump")
        ctx = TokenContext(first("hostname") or name, name, int(port_text),
                           first("user") or getpass.getuser(), jump, first("hostkeyalias"))
        files = options.get("identityfile", [])
        if tuple(files) == ssh_g.default_identity_files(self.ssh):
            files = []
        try:
            keys = tuple(expand_identity_file(f, ctx) for f in files)
            command = first("proxycommand")
            proxy = expand_proxy_command(command, ctx) if command and not jump else None
        except ValueError as exc:
            raise self._error(str(exc)) from None
        return Resolved(ctx.hostname, ctx.port, ctx.user, keys,
                        first("identitiesonly").lower() == "yes", jump, proxy)

    def _error(self, problem: str) -> ConfigError:
        return ConfigError(self.config or "ssh config", 0, problem)


class ParamikoResolver:
    """paramiko's SSHConfig over the lines as OpenSSH splits them (no ``Match exec``)."""

    resolved_by = BY_PARAMIKO

    def __init__(self, config: Path | None) -> None:
        self._path = config
        self._config, self._lines = config_paramiko.load(config)

    def resolve(self, name: str, user: str | None, port: int | None) -> Resolved:
        options = config_paramiko.lookup(self._config, name, self._lines)
        jump = str(options.get("proxyjump") or "")
        jump = "" if jump.lower() == "none" else jump
        alias = str(options.get("hostkeyalias") or "")
        ctx = TokenContext(str(options.get("hostname", name)), name,
                           port or int(options.get("port", 22)),
                           user or str(options.get("user", "")) or getpass.getuser(),
                           jump, "" if alias == "none" else alias)
        command = str(options.get("proxycommand") or "")
        try:
            keys = tuple(expand_identity_file(str(k), ctx)
                         for k in options.get("identityfile", []))
            proxy = expand_proxy_command(command, ctx) if command not in ("", "none") else None
        except ValueError as exc:
            raise ConfigError(self._path or "ssh config", 0, str(exc)) from None
        return Resolved(
            hostname=ctx.hostname, port=ctx.port, user=ctx.user, identity_files=keys,
            identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
            proxy_jump=jump, proxy_command=None if jump else proxy,
        )


def resolver_for(config: Path | None, ssh: str | None) -> HopResolver:
    """``ssh -G`` when an ssh client is given, paramiko otherwise."""
    return SshGResolver(ssh, config) if ssh else ParamikoResolver(config)
