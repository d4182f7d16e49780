"""Typed values out of a job file's mapping, one user-facing problem per bad field.

YAML and TOML hand back whatever the user wrote (``gpus: two``, ``time_limit: soon``, a
date, a nested list); each reader here accepts the forms the job file format documents and
otherwise records ``file: field: must be …, got …`` and carries on, so a file's problems
are all reported at once.
"""

from __future__ import annotations

import bisect
import math
import re
import shlex
from collections.abc import Callable
from typing import Any

from app.core.console.parse import SERIES_NAME_RE, fixed_series_pattern
from app.core.jobs.argparams import param_key
from app.core.jobs.jobspec import PARAM_NAME_RE, show
from app.core.jobs.sweep import MAX_COMBINATIONS, SweepTooLarge, grid_size

_DURATION_RE = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)\s*d)?\s*(?:(?P<h>\d+(?:\.\d+)?)\s*h)?\s*"
    r"(?:(?P<m>\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(?P<s>\d+(?:\.\d+)?)\s*s)?"
)
_PLAIN_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(mib|mb|m|gib|gb|g)?", re.IGNORECASE)


def parse_duration(value: Any) -> float | None:
    """Seconds in ``"2h30m"``, ``"90m"``, ``"1d"``, ``"45s"``, ``"3600"`` or 3600; None if
    it is none of these or not more than zero."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = _finite(value)
    elif isinstance(value, str) and _PLAIN_NUMBER_RE.fullmatch(value.strip()):
        seconds = _finite(float(value))
    elif isinstance(value, str) and (m := _DURATION_RE.fullmatch(value.strip())):
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        seconds = sum(float(v) * units[k] for k, v in m.groupdict().items() if v)
    else:
        return None
    return seconds if seconds is not None and seconds > 0 else None


def parse_memory_mib(value: Any) -> float | None:
    """MiB in ``8192``, ``"8192MiB"``, ``"8GiB"`` or ``"8 GB"`` (GB is read as GiB, as
    nvidia-smi does); None if it is none of these or negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        mib = _finite(value)
    elif isinstance(value, str) and (m := _MEMORY_RE.fullmatch(value.strip())):
        scale = 1024 if (m.group(2) or "m").lower().startswith("g") else 1
        mib = _finite(float(m.group(1)) * scale)
    else:
        return None
    return mib if mib is not None and mib >= 0 else None


def _finite(value: float) -> float | None:
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class FieldReader:
    """Reads typed values out of the file's mapping, collecting one problem per field."""

    def __init__(self, source: str, data: dict[Any, Any]) -> None:
        self.source = source
        self.data = data
        self.problems: list[str] = []
        # Keys with a problem already reported (so validation does not repeat them).
        self.reported: set[str] = set()
        # Problems are listed in the order their keys appear in the file.
        self._where = {key: i for i, key in enumerate(data)}
        self._positions: list[int] = []

    def problem(self, key: str, message: str) -> None:
        self.reported.add(key)
        where = self._where.get(key, -1)
        at = bisect.bisect_right(self._positions, where)
        self._positions.insert(at, where)
        self.problems.insert(at, f"{self.source}: {key + ': ' if key else ''}{message}")

    def bad(self, key: str, kind: str) -> None:
        self.problem(key, f"must be {kind}, got {show(self.data[key])}")

    def text(self, key: str, default: str | None = None, *, numbers: bool = False
             ) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if numbers and _scalar_number(value):
            return str(value)
        if not isinstance(value, str):
            self.bad(key, "text")
            return default
        return value

    def text_list(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        self.bad(key, "text or a list of text")
        return []

    def words(self, key: str) -> list[str]:
        """A command: a string split into words with shlex, or a list of text/numbers."""
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as e:
                self.problem(key, f"cannot split {show(value)} into words: {e}")
                return []
        if isinstance(value, list) and all(isinstance(v, str) or _scalar_number(v)
                                           for v in value):
            return [v if isinstance(v, str) else str(v) for v in value]
        self.bad(key, "text or a list of text")
        return []

    def whole(self, key: str, default: int, kind: str, *, minimum: int | None = None) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _scalar_number(value) or not isinstance(value, int) or (
            minimum is not None and value < minimum
        ):
            self.bad(key, kind)
            return default
        return value

    def whole_list(self, key: str) -> list[int]:
        value = self.data.get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if all(_scalar_number(v) and isinstance(v, int) and v >= 0 for v in items):
            return items
        self.bad(key, "a GPU index or a list of them (whole numbers ≥ 0)")
        return []

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.bad(key, "true or false")
            return default
        return value

    def convert(self, key: str, parse: Callable[[Any], float | None], kind: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        result: float | None = parse(value)
        if result is None:
            self.bad(key, kind)
        return result

    def env(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(key, "a mapping of NAME: value")
            return {}
        out: dict[str, str] = {}
        for name, v in value.items():
            if not isinstance(name, str):
                self.problem(key, f"variable name {show(name)} is not text")
            elif isinstance(v, str) or _scalar_number(v):
                out[name] = v if isinstance(v, str) else str(v)
            else:
                hint = ' (quote it: "true")' if isinstance(v, bool) else ""
                self.problem(key, f"{name}: must be text or a number, got {show(v)}{hint}")
        return out

    def params(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(key, "a mapping of name: value")
            return {}
        out: dict[str, Any] = {}
        for name, v in value.items():
            if self._param_name(key, name):
                if _scalar(v):
                    out[name] = v
                else:
                    self.problem(key, f"{name}: must be text, a number or true/false, "
                                 f"got {show(v)}")
        return out

    def metric_patterns(self, key: str) -> list[str]:
        """Console patterns: a regex, a list of them, a mapping ``series: regex`` (a fixed
        series name), or a list mixing regexes and such one-entry mappings."""
        value = self.data.get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and item:
                for series, regex in item.items():
                    if not isinstance(series, str) or not SERIES_NAME_RE.fullmatch(series):
                        self.problem(key, f"{show(series)} is not a usable series name "
                                     "(letters, digits, _ . / -; starting with a letter)")
                    elif not isinstance(regex, str):
                        self.problem(key, f"{series}: must be a regular expression (text), "
                                     f"got {show(regex)}")
                    else:
                        out.append(fixed_series_pattern(series, regex))
            else:
                self.bad(key, "a regular expression, a list of them, or a mapping of "
                         "series name: regular expression")
                return []
        return out

    def sweep(self, key: str, params: dict[str, Any]) -> dict[str, list[Any]]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not value:
            self.bad(key, "a mapping of parameter: [values…]")
            return {}
        grid: dict[str, list[Any]] = {}
        for name, values in value.items():
            if not self._param_name(key, name):
                continue
            if param_key(name) in {param_key(p) for p in params}:
                self.problem(key, f"{name} is also in params; keep it in one place")
            elif not isinstance(values, list) or not values:
                self.problem(key, f"{name}: must be a non-empty list of values, "
                             f"got {show(values)}")
            elif not all(_scalar(v) and v is not None for v in values):
                self.problem(key, f"{name}: values must be text, numbers or true/false")
            elif len({(type(v), v) for v in values}) != len(values):
                self.problem(key, f"{name}: a value appears twice")
            else:
                grid[name] = values
        if grid and grid_size(grid) > MAX_COMBINATIONS:
            self.problem(key, str(SweepTooLarge(grid_size(grid), {k: len(v) for k, v in
                                                                  grid.items()},
                                                MAX_COMBINATIONS)))
            return {}
        return grid

    def _param_name(self, key: str, name: Any) -> bool:
        if isinstance(name, str) and PARAM_NAME_RE.fullmatch(name):
            return True
        self.problem(key, f"{show(name)} is not a valid parameter name (letters, digits, "
                     "_ . -; starting with a letter)")
        return False


def _scalar_number(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value)
    )


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _scalar_number(value)
