"""The fallback resolver for machines without an ``ssh`` client: paramiko's ``SSHConfig``.

Lines are split by ``sshconf_lines`` as OpenSSH splits them and handed to paramiko in a
form it reads the same way (comments gone, ``Match host=b`` as ``Match host b``, blocks of
an Include inside a block made conditional on it, ``%%`` kept from its token expansion).
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import paramiko

from ssh_backend.sshconf_lines import (
    RAW_KEYWORDS,
    ConfigError,
    Line,
    load_lines,
    match_words,
)

# paramiko expands %h but leaves %% alone; this stands in for a literal '%' meanwhile.
_PERCENT = "\ue000"
_CRITERIA_WITHOUT_ARGUMENT = {"all", "canonical", "final"}
# paramiko knows fewer tokens here than ssh (no %p or %n in IdentityFile): these values
# pass through it untouched and are expanded with ssh's tables (ssh_tokens).
_EXPANDED_BY_US = frozenset({"identityfile", "proxycommand"})


def _quote(words: Iterable[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _criteria(words: Sequence[str]) -> list[str]:
    """Match criteria with their names lower-cased (OpenSSH compares them so)."""
    out: list[str] = []
    expect_name = True
    for word in words:
        if expect_name:
            bang = "!" if word.startswith("!") else ""
            name = word[len(bang):].lower()
            out.append(bang + name)
            expect_name = name in _CRITERIA_WITHOUT_ARGUMENT
        else:
            out.append(word)
            expect_name = True
    return out


def paramiko_text(line: Line) -> str:
    """One line as paramiko should see it."""
    if line.keyword == "host":
        if line.condition:
            words = [*line.condition, "originalhost", ",".join(line.args)]
            return "Match " + _quote(_criteria(words))
        return "Host " + _quote(line.args)
    if line.keyword == "match":
        words = match_words(line.args)
        if line.condition:  # 'all' may not be combined; under a condition it adds nothing
            words = [w for w in words if w.lower() != "all"]
        return "Match " + _quote(_criteria([*line.condition, *words]))
    value = line.rest if line.keyword in RAW_KEYWORDS else " ".join(line.args)
    if line.keyword in _EXPANDED_BY_US:
        return f"{line.keyword} {value.replace('%', _PERCENT)}"
    return f"{line.keyword} {value.replace('%%', _PERCENT)}"


def is_port(value: str) -> bool:
    """Whether ``value`` is a TCP port, 1 to 65535, written in ASCII digits."""
    # The length first: int() refuses numbers of more than 4300 digits with a ValueError.
    return value.isascii() and value.isdigit() and len(value) <= 5 and 0 < int(value) < 65536


def _validate(line: Line, text: str) -> None:
    """Parse one line alone so an error can name its file and line (paramiko's cannot)."""
    if line.keyword == "port" and not (len(line.args) == 1 and is_port(line.args[0])):
        raise ConfigError(line.path, line.number, f"Port must be 1-65535, got {line.rest!r}")
    try:
        paramiko.SSHConfig().parse(io.StringIO(text))
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
        raise ConfigError(line.path, line.number, str(exc)) from None


def load(path: Path | None) -> tuple[paramiko.SSHConfig, list[Line]]:
    """Read ``path`` with Includes expanded into a paramiko config (missing: empty)."""
    config = paramiko.SSHConfig()
    lines = load_lines(path) if path is not None else []
    texts = [paramiko_text(line) for line in lines]
    for line, text in zip(lines, texts, strict=True):
        _validate(line, text)
    try:
        config.parse(io.StringIO("\n".join(texts)))
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
        raise ConfigError(path or "ssh config", 0, str(exc)) from None
    return config, lines


def _unplaceholder(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_PERCENT, "%")
    if isinstance(value, list):
        return [_unplaceholder(v) for v in value]
    return value


def lookup(config: paramiko.SSHConfig, name: str, lines: Sequence[Line]) -> dict[str, Any]:
    """``config.lookup(name)``, with what paramiko raises at lookup time as ConfigError."""
    exec_line = next((ln for ln in lines if _is_match_exec(ln)), None)
    if exec_line is not None:
        # paramiko would run the command through the optional 'invoke' package (an
        # ImportError without it, a shell reading our stdin with it): refuse it plainly.
        raise ConfigError(exec_line.path, exec_line.number,
                          "Match exec is not supported by Labdeck without an ssh client; "
                          "install openssh-client, or use Host or Match host")
    try:
        found = config.lookup(name)
    except (ValueError, KeyError, paramiko.ssh_exception.CouldNotCanonicalize) as exc:
        # CanonicalizeHostname with a bad CanonicalizeMaxDots, no CanonicalDomains, or a
        # name that canonicalisation was told not to fall back from.
        path = lines[0].path if lines else "ssh config"
        raise ConfigError(path, 0, f"cannot apply the config to {name!r} (check "
                          "CanonicalizeHostname, CanonicalizeMaxDots, CanonicalDomains): "
                          f"{type(exc).__name__}: {exc}") from None
    return {key: _unplaceholder(value) for key, value in found.items()}


def _is_match_exec(line: Line) -> bool:
    words = [*line.condition, *match_words(line.args)] if line.keyword == "match" else []
    return any(w.lower().lstrip("!") == "exec" for w in words)
