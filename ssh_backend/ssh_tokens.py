"""OpenSSH's ``%`` tokens and ``${VAR}``s, for the values ``ssh -G`` prints unexpanded.

``ssh -G`` shows ``IdentityFile`` and ``ProxyCommand`` as written; ssh expands them only
when it connects (sshconnect.c, ``default_client_percent_dollar_expand``), so Labdeck
does the same with the same tables.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from dataclasses import dataclass

_TOKEN = re.compile(r"%(.)|\$\{([^}]*)\}|%$|\$\{[^}]*$")


@dataclass(frozen=True, slots=True)
class TokenContext:
    """What the tokens stand for on one connection."""

    hostname: str  # %h, after HostName
    original: str  # %n, the name given to ssh
    port: int  # %p
    user: str  # %r
    jump: str = ""  # %j, the ProxyJump value
    host_key_alias: str = ""  # %k when set, else the original name


def _client_table(ctx: TokenContext) -> dict[str, str]:
    local = socket.gethostname()
    l_h_p_r_j = f"{local}{ctx.hostname}{ctx.port}{ctx.user}{ctx.jump}"
    return {
        "%": "%",
        # OpenSSH's %C is this SHA-1: a short name for the connection, not a secret.
        "C": hashlib.sha1(l_h_p_r_j.encode(), usedforsecurity=False).hexdigest(),
        "L": local.split(".", 1)[0],
        "l": local,
        "d": os.path.expanduser("~"),
        "h": ctx.hostname,
        "i": str(os.getuid()),
        "j": ctx.jump,
        "k": ctx.host_key_alias or ctx.original,
        "n": ctx.original,
        "p": str(ctx.port),
        "r": ctx.user,
        "u": getpass.getuser(),
    }


def _expand(value: str, table: dict[str, str], env: bool) -> str:
    def one(match: re.Match[str]) -> str:
        token, var = match.group(1), match.group(2)
        if token is not None:
            if token not in table:
                raise ValueError(f"unknown token %{token} in {value!r}")
            return table[token]
        if var is None or not env:
            if env:
                raise ValueError(f"unterminated token in {value!r}")
            return match.group(0)
        if var not in os.environ:
            raise ValueError(f"environment variable ${{{var}}} is not set ({value!r})")
        return os.environ[var]

    return _TOKEN.sub(one, value)


def expand_identity_file(value: str, ctx: TokenContext) -> str:
    """An ``IdentityFile`` as ssh opens it: ``~`` first, then ``%x`` and ``${VAR}``."""
    return _expand(os.path.expanduser(value), _client_table(ctx), env=True)


def expand_proxy_command(value: str, ctx: TokenContext) -> str:
    """A ``ProxyCommand`` as ssh runs it: OpenSSH expands only %h %n %p %r and %% there."""
    table = {k: v for k, v in _client_table(ctx).items() if k in "%hnpr"}
    return _expand(value, table, env=False)
