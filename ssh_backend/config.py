"""Turn ~/.ssh/config plus a HostSpec into a connect plan: target hop, jump hops, proxy.

paramiko's ``SSHConfig`` does the matching and ``%h``-style token expansion; this module
adds what it lacks (``Include``, line-accurate errors) and the HostSpec overrides.
"""

from __future__ import annotations

import getpass
import glob
import io
import os
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from ssh_backend.hostspec import HostSpec

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
# OpenSSH's READCONF_MAX_DEPTH: an Include loop ends with an error, not a stack overflow.
MAX_INCLUDE_DEPTH = 16
# Includes may fan out (each file including several others, or one file many times):
# past this many lines after expansion the config is refused instead of read for ever.
MAX_CONFIG_LINES = 100_000
_WILDCARDS = set("*?!")


class ConfigError(ValueError):
    """The ssh config cannot be used; the message names the file and line."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


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
    """How to reach a host: connect to ``jumps[0]`` (or run ``proxy_command``), hop on."""

    target: Hop
    jumps: tuple[Hop, ...] = ()
    proxy_command: str | None = None


@dataclass(frozen=True, slots=True)
class _Line:
    path: Path
    number: int
    text: str


def _include_paths(value: str, base: Path) -> list[Path]:
    """The files one ``Include`` value names, sorted per glob like OpenSSH."""
    try:
        patterns = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot split Include arguments: {exc}") from None
    found: list[Path] = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            # OpenSSH: relative to ~/.ssh for the user config, i.e. the main file's folder.
            pattern = str(base / pattern)
        found += [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file()]
    return found


def _keyword(text: str) -> str:
    """The lower-cased keyword of a config line ('' for blank lines)."""
    return text.split(None, 1)[0].split("=", 1)[0].lower() if text else ""


def _expanded_lines(path: Path, base: Path, depth: int = 0) -> Iterator[_Line]:
    """Lines of ``path`` with every ``Include`` replaced by the included files' lines."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(path, 0, f"Include nested deeper than {MAX_INCLUDE_DEPTH} levels")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, 0, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(path, 0, f"cannot read: {exc.strerror or exc}") from None
    header: _Line | None = None  # the Host/Match line whose block we are in
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        keyword = _keyword(stripped)
        if keyword in ("host", "match"):
            header = _Line(path, number, stripped)
        if keyword != "include":
            yield _Line(path, number, raw)
            continue
        value = stripped[len("include") :].lstrip(" \t=")
        if not value:
            raise ConfigError(path, number, "Include needs a file name")
        try:
            included = _include_paths(value, base)
        except ValueError as exc:
            raise ConfigError(path, number, str(exc)) from None
        for sub in included:
            opened_block = False
            for line in _expanded_lines(sub, base, depth + 1):
                opened_block |= _keyword(line.text.strip()) in ("host", "match")
                yield line
            if opened_block:
                # The included file started its own blocks; the rest of this file's block
                # must stay conditional on its own header, as in OpenSSH.
                yield header or _Line(path, number, "Host *")


def is_port(value: str) -> bool:
    """Whether ``value`` is a TCP port, 1 to 65535, written in ASCII digits."""
    # The length first: int() refuses numbers of more than 4300 digits with a ValueError.
    return value.isascii() and value.isdigit() and len(value) <= 5 and 0 < int(value) < 65536


def _validate(line: _Line) -> None:
    """Parse one line alone so an error can name its file and line (paramiko's cannot)."""
    text = line.text.strip()
    if not text or text.startswith("#"):
        return
    match = paramiko.SSHConfig.SETTINGS_REGEX.match(text)
    if not match:
        raise ConfigError(line.path, line.number, f"expected 'Keyword value', got {text!r}")
    key, value = match.group(1).lower(), match.group(2).strip()
    if key == "port" and not is_port(value):
        raise ConfigError(line.path, line.number, f"Port must be 1-65535, got {value!r}")
    try:
        paramiko.SSHConfig().parse(io.StringIO(text))
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
        raise ConfigError(line.path, line.number, str(exc)) from None


def load(path: Path) -> tuple[paramiko.SSHConfig, list[_Line]]:
    """Read ``path`` with Includes expanded; a missing file is an empty config."""
    path = path.expanduser()
    config = paramiko.SSHConfig()
    if not path.exists():
        return config, []
    lines: list[_Line] = []
    for line in _expanded_lines(path, path.parent):
        lines.append(line)
        if len(lines) > MAX_CONFIG_LINES:
            raise ConfigError(line.path, line.number,
                              f"more than {MAX_CONFIG_LINES:,} lines with Includes expanded")
    for line in lines:
        _validate(line)
    try:
        config.parse(io.StringIO("\n".join(line.text for line in lines)))
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
        raise ConfigError(path, 0, str(exc)) from None
    return config, lines


@dataclass(frozen=True, slots=True)
class AliasPlan:
    """A concrete ``Host`` alias and how it is reached, or why the config cannot say."""

    alias: str
    plan: ConnectPlan | None
    error: ConfigError | None = None


def list_aliases(ssh_config: Path) -> list[str]:
    """Concrete ``Host`` names (no wildcards or negations), in file order, once each."""
    _config, lines = load(ssh_config)
    return _aliases(lines)


def resolve_aliases(ssh_config: Path) -> list[AliasPlan]:
    """Every concrete alias of ``ssh_config`` with its plan, as ``ssh -G alias`` would see it.

    The file is read once; an alias the config cannot resolve carries its ConfigError, and
    a config that cannot be read at all raises it. Resolving may look names up in DNS
    (``CanonicalizeHostname``), so callers with a user waiting run this off their thread.
    """
    config, lines = load(ssh_config)
    where = str(ssh_config)
    found: list[AliasPlan] = []
    for alias in _aliases(lines):
        spec = HostSpec(name=alias, ssh_alias=alias)
        try:
            found.append(AliasPlan(alias, _plan(spec, config, lines, where)))
        except ConfigError as exc:
            found.append(AliasPlan(alias, None, exc))
    return found


def _aliases(lines: Sequence[_Line]) -> list[str]:
    names: list[str] = []
    for line in lines:
        text = line.text.strip()
        match = paramiko.SSHConfig.SETTINGS_REGEX.match(text)
        if not match or match.group(1).lower() != "host":
            continue
        for name in shlex.split(match.group(2)):
            if not _WILDCARDS & set(name) and name not in names:
                names.append(name)
    return names


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


def _lookup(config: paramiko.SSHConfig, name: str, lines: Sequence[_Line]) -> dict[str, Any]:
    """``config.lookup(name)``, with what paramiko raises at lookup time as ConfigError."""
    exec_line = next((ln for ln in lines if _is_match_exec(ln.text)), None)
    if exec_line is not None:
        # paramiko would run the command through the optional 'invoke' package (an
        # ImportError without it, a shell reading our stdin with it): refuse it plainly.
        raise ConfigError(exec_line.path, exec_line.number,
                          "Match exec is not supported by Labdeck; use Host or Match host")
    try:
        return dict(config.lookup(name))
    except (ValueError, KeyError, paramiko.ssh_exception.CouldNotCanonicalize) as exc:
        # CanonicalizeHostname with a bad CanonicalizeMaxDots, no CanonicalDomains, or a
        # name that canonicalisation was told not to fall back from.
        path = lines[0].path if lines else "ssh config"
        raise ConfigError(path, 0, f"cannot apply the config to {name!r} (check "
                          "CanonicalizeHostname, CanonicalizeMaxDots, CanonicalDomains): "
                          f"{type(exc).__name__}: {exc}") from None


def _is_match_exec(text: str) -> bool:
    words = text.replace("=", " ").split()
    return len(words) > 1 and words[0].lower() == "match" and any(
        w.lower().lstrip("!") == "exec" for w in words[1:])


def _hop(
    config: paramiko.SSHConfig,
    name: str,
    user: str | None,
    port: int | None,
    key_filename: str | None,
    hostname: str | None = None,
    lines: Sequence[_Line] = (),
) -> tuple[Hop, dict[str, object]]:
    """One hop: explicit values first, then the config's block for ``name``."""
    options = _lookup(config, name, lines)
    keys: list[str] = list(options.get("identityfile", []))
    if key_filename:
        keys = [key_filename]
    hop = Hop(
        hostname=hostname or str(options.get("hostname", name)),
        port=port or int(options.get("port", 22)),
        user=user or str(options.get("user", "")) or getpass.getuser(),
        key_filenames=tuple(os.path.expanduser(k) for k in keys),
        identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
    )
    return hop, dict(options)


def resolve(spec: HostSpec, ssh_config: Path | None) -> ConnectPlan:
    """The hops to ``spec``; ``ssh_config=None`` reads no config file at all.

    Raises ConfigError for a malformed config or jump specification.
    """
    config, lines = load(ssh_config) if ssh_config is not None else (paramiko.SSHConfig(), [])
    return _plan(spec, config, lines, str(ssh_config or "host settings"))


def _plan(spec: HostSpec, config: paramiko.SSHConfig, lines: Sequence[_Line],
          where: str) -> ConnectPlan:
    name = spec.ssh_alias or spec.hostname or spec.name
    target, options = _hop(
        config, name, spec.user, spec.port, spec.key_filename, hostname=spec.hostname,
        lines=lines,
    )
    if spec.proxy_jump:
        jump_texts: list[str] = list(spec.proxy_jump)
        proxy_command = None
    else:
        jump_value = str(options.get("proxyjump") or "")
        jump_texts = [] if jump_value.lower() in ("", "none") else jump_value.split(",")
        command = options.get("proxycommand")
        proxy_command = None if jump_texts or not command else str(command)
    jumps: list[Hop] = []
    for text in jump_texts:
        try:
            user, host, port = _split_jump(text)
        except ValueError as exc:
            raise ConfigError(where, 0, f"ProxyJump: {exc}") from None
        hop, _ = _hop(config, host, user, port, None, lines=lines)
        jumps.append(hop)
    return ConnectPlan(target=target, jumps=tuple(jumps), proxy_command=proxy_command)
