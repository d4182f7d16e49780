"""The concrete ``Host`` aliases of an ssh config, for importing (ssh has no listing)."""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Sequence

from ssh_backend.sshconf_lines import ConfigError, Line

_WILDCARDS = set("*?!")


def _matches_list(name: str, patterns: str) -> bool:
    """OpenSSH's ``match_pattern_list``: a negated pattern that matches wins over all."""
    hit = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern[negated:]):
            if negated:
                return False
            hit = True
    return hit


def _reachable(name: str, condition: Sequence[str]) -> bool:
    """Whether the blocks around an Include let ``name`` see the file's Host blocks.

    Only host patterns can be judged from the file; other Match criteria (exec, user…)
    are left to ssh, so an alias under them is listed and resolved as ssh does.
    """
    for key, value in itertools.pairwise(condition):
        if key.lower() == "originalhost" and not _matches_list(name, value):
            return False
    return True


def aliases(lines: Sequence[Line]) -> list[str]:
    """Concrete ``Host`` names (no wildcards or negations), in file order, once each."""
    names: list[str] = []
    for line in lines:
        if line.keyword != "host":
            continue
        for name in line.args:
            if _WILDCARDS & set(name) or name in names or not _reachable(name, line.condition):
                continue
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(line.path, line.number,
                                  "not UTF-8 text (a Host name with other bytes)") from None
            names.append(name)
    return names
