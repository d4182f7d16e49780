"""Read ssh_config files line by line as OpenSSH's readconf.c does, Includes expanded.

This is what lists the ``Host`` aliases (``ssh`` has no listing) and what feeds the
paramiko fallback; when an ``ssh`` client is present, resolving a host is left to it.
Splitting follows OpenSSH 8.7+: CRLF endings, ``Keyword=value``, quotes and backslash
escapes, and a word starting with ``#`` ending the line.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

# OpenSSH's READCONF_MAX_DEPTH: an Include loop ends with an error, not a stack overflow.
MAX_INCLUDE_DEPTH = 16
# Includes may fan out (each file including several others, or one file many times):
# past this many lines after expansion the config is refused instead of read for ever.
MAX_CONFIG_LINES = 100_000
WHITESPACE = " \t\r\n"
# Keywords whose value is the rest of the line, unsplit (a shell command may hold '#').
RAW_KEYWORDS = frozenset({"proxycommand", "localcommand", "remotecommand",
                          "knownhostscommand"})
HEADERS = frozenset({"host", "match"})


class ConfigError(ValueError):
    """The ssh config cannot be used; the message names the file and line."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Line:
    """One meaningful config line: its keyword (lower case), words, and raw remainder.

    ``condition`` holds the Match criteria of the ``Host``/``Match`` blocks enclosing the
    ``Include`` that brought this line in: OpenSSH reads such a file only for hosts that
    match those blocks, so its own blocks are conditional on them too.
    """

    path: Path
    number: int
    keyword: str
    args: tuple[str, ...]
    rest: str
    condition: tuple[str, ...] = ()


def argv_split(text: str) -> list[str]:
    """OpenSSH's ``argv_split(s, .., terminate_on_comment=1)``; ValueError on open quotes."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == "#":
            break
        word: list[str] = []
        quote = ""
        while i < n:
            ch = text[i]
            if ch == "\\" and i + 1 < n and (text[i + 1] in "'\"\\"
                                             or (not quote and text[i + 1] == " ")):
                i += 1
                word.append(text[i])
            elif not quote and ch in " \t":
                break
            elif not quote and ch in "'\"":
                quote = ch
            elif quote and ch == quote:
                quote = ""
            else:
                word.append(ch)
            i += 1
        if quote:
            raise ValueError("invalid quotes")
        words.append("".join(word))
    return words


def split_keyword(text: str) -> tuple[str, str] | None:
    """``(keyword, remainder)`` as OpenSSH's ``strdelim`` cuts them; None for a comment or
    a blank line. One ``=`` may stand between keyword and value, spaces around it."""
    text = text.strip(WHITESPACE + "\f")
    if not text or text.startswith("#"):
        return None
    end = next((i for i, ch in enumerate(text) if ch in WHITESPACE + "="), len(text))
    keyword, rest = text[:end], text[end:]
    if not rest.startswith("="):
        rest = rest.lstrip(WHITESPACE)
    if rest.startswith("="):
        rest = rest[1:]
    rest = rest.lstrip(WHITESPACE)
    return keyword.lower(), rest


def ssh_user_dir() -> Path:
    """Where OpenSSH looks for relative Include paths of a user config: ``~/.ssh``."""
    return Path(os.path.expanduser("~/.ssh"))


def _include_paths(words: list[str]) -> list[Path]:
    """The files one ``Include`` names, sorted per glob like OpenSSH (missing: none)."""
    found: list[Path] = []
    for pattern in words:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = str(ssh_user_dir() / pattern)
        found += [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file()]
    return found


def _read_text(path: Path) -> str:
    try:
        # surrogateescape: a Latin-1 comment must not make the whole file unusable, as it
        # does not for ssh; words that need to be text are checked where they are used.
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise ConfigError(path, 0, f"cannot read: {exc.strerror or exc}") from None


def _parse(path: Path, number: int, raw: str, condition: tuple[str, ...]) -> Line | None:
    cut = split_keyword(raw)
    if cut is None:
        return None
    keyword, rest = cut
    if not rest:
        raise ConfigError(path, number, f'no argument after keyword "{keyword}"')
    try:
        args = tuple(argv_split(rest))
    except ValueError as exc:
        raise ConfigError(path, number, str(exc)) from None
    return Line(path, number, keyword, args, rest, condition)


def header_condition(line: Line) -> tuple[str, ...]:
    """A ``Host``/``Match`` line as Match criteria, to prefix the blocks of its Includes."""
    if line.keyword == "host":
        return ("originalhost", ",".join(line.args))
    return tuple(w for w in match_words(line.args) if w.lower() != "all")


def match_words(args: tuple[str, ...]) -> list[str]:
    """Match arguments with ``host=b`` split into ``host b``, as OpenSSH's strdelim does."""
    words: list[str] = []
    for arg in args:
        key, eq, value = arg.partition("=")
        words += [key, value] if eq and key else [arg]
    return words


class _Reader:
    """Expands Includes; each file is read and split once however often it is included
    (an Include fan-out must reach MAX_CONFIG_LINES quickly, not after minutes)."""

    def __init__(self) -> None:
        self._files: dict[Path, list[Line]] = {}
        self._globs: dict[tuple[str, ...], list[Path]] = {}

    def _lines_of(self, path: Path) -> list[Line]:
        if path not in self._files:
            parsed = (_parse(path, number, raw, ())
                      for number, raw in enumerate(_read_text(path).split("\n"), start=1))
            self._files[path] = [line for line in parsed if line is not None]
        return self._files[path]

    def _included(self, words: tuple[str, ...]) -> list[Path]:
        if words not in self._globs:
            self._globs[words] = _include_paths(list(words))
        return self._globs[words]

    def expand(self, path: Path, depth: int = 0,
               condition: tuple[str, ...] = ()) -> Iterator[Line]:
        """Lines of ``path`` with every ``Include`` replaced by the included files' lines."""
        if depth > MAX_INCLUDE_DEPTH:
            raise ConfigError(path, 0,
                              f"Include nested deeper than {MAX_INCLUDE_DEPTH} levels")
        header: Line | None = None  # the Host/Match line whose block we are in
        for line in self._lines_of(path):
            if condition:
                line = replace(line, condition=condition)
            if line.keyword in HEADERS:
                header = line
            if line.keyword != "include":
                yield line
                continue
            inner = condition + (header_condition(header) if header else ())
            for sub in self._included(line.args):
                yield from self.expand(sub, depth + 1, inner)
            # The included files may have opened blocks of their own; the rest of this
            # block stays conditional on its own header (everything, at the top), as in
            # OpenSSH.
            yield header or Line(path, line.number, "host", ("*",), "*", condition)


def load_lines(path: Path) -> list[Line]:
    """All lines of ``path`` with Includes expanded; a missing file has none."""
    path = path.expanduser()
    if not path.exists():
        return []
    lines: list[Line] = []
    for line in _Reader().expand(path):
        lines.append(line)
        if len(lines) > MAX_CONFIG_LINES:
            raise ConfigError(line.path, line.number,
                              f"more than {MAX_CONFIG_LINES:,} lines with Includes expanded")
    return lines


def files_read(lines: list[Line], main: Path) -> list[Path]:
    """The files behind ``lines`` (the main one first): what a cached answer depends on."""
    seen = dict.fromkeys([main, *(line.path for line in lines)])
    return list(seen)
