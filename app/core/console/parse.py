"""Metric points read out of a run's console: the line parser and the byte-stream splitter.

Built-in reading (no configuration, ``app.core.console.reading``): a line counts only
if it says plainly that it reports values — an explicit ``name=number`` or ``name: number``
pair, fields split by ``|``, tabs or (after a leading ``iter 7:``) commas that are
``name number``, or a whole JSON object or Python dict printed on it — so prose with
numbers in it never becomes a point. Numbers may use scientific notation; ``nan`` /
``inf`` / ``-inf`` are kept as floats; ``95%`` reads 95. A number followed by ``:``, ``/``
(except ``Epoch 3/10``), a unit or another digit group is not a value (clock times,
``3.2s``, ``9913/10000``, versions), nor is a source location, pid, port or rank.
``step``/``global_step``/``iter``/``iteration``/``it`` (also as ``step 100``) give the
points' step; ``epoch`` (also ``Epoch 3/10``) is its own series and the step when the
line has no other one. A line with ``\\r`` in it (progress bars) counts by its last
segment only, and lines over ``MAX_LINE_BYTES`` are ignored.

Per-job patterns (``JobSpec.metric_patterns``) are regexes with a named group ``value``
and either a named group ``name`` or a leading ``(?#series=NAME)`` comment naming a fixed
series; an optional group ``step`` gives the step. When any pattern matches a line, that
line is read by the patterns only.

``ConsoleSplitter`` turns console bytes, chunk by chunk, into complete lines. Its carry (the
unfinished last line) can be rebuilt from the stored log's tail, so a restarted app reads
on exactly where the last one stopped: nothing counted twice, nothing missed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.core.console.reading import as_step, builtin_points, number

__all__ = [
    "MAX_LINE_BYTES", "ConsolePoint", "ConsoleSplitter", "MetricPattern", "compile_patterns",
    "parse_line", "parse_lines", "pattern_problems",
]

MAX_LINE_BYTES = 64 * 1024
MAX_PATTERNS = 32
MAX_PATTERN_CHARS = 2000

# (series, step or None, value)
ConsolePoint = tuple[str, int | None, float]

_NAME = r"[A-Za-z_][\w./-]*"
_SERIES_COMMENT_RE = re.compile(rf"^\(\?#series=(?P<series>{_NAME})\)")
SERIES_NAME_RE = re.compile(_NAME)


@dataclass(frozen=True, slots=True)
class MetricPattern:
    """A compiled per-job pattern; ``series`` is set for a fixed-name pattern."""

    regex: re.Pattern[str]
    series: str | None


def pattern_problems(patterns: Iterable[str]) -> list[str]:
    """One sentence per unusable pattern (empty when all can be used)."""
    problems: list[str] = []
    items = list(patterns)
    if len(items) > MAX_PATTERNS:
        problems.append(f"at most {MAX_PATTERNS} patterns, got {len(items)}")
    for text in items:
        shown = text if len(text) <= 60 else text[:57] + "…"
        if len(text) > MAX_PATTERN_CHARS:
            problems.append(f"{shown!r} is longer than {MAX_PATTERN_CHARS} characters")
            continue
        try:
            regex = re.compile(text)
        except re.error as exc:
            problems.append(f"{shown!r} is not a valid regular expression: {exc}")
            continue
        groups = regex.groupindex
        fixed = _SERIES_COMMENT_RE.match(text)
        if "value" not in groups:
            problems.append(f"{shown!r} needs a named group for the value: (?P<value>…)")
        if "name" not in groups and fixed is None:
            problems.append(f"{shown!r} needs a named group (?P<name>…) or a fixed series "
                            "name (write it as  series_name: regex)")
    return problems


def compile_patterns(patterns: Iterable[str]) -> tuple[MetricPattern, ...]:
    """Compile ``patterns`` (already validated); a bad one raises ``ValueError``."""
    items = tuple(patterns)
    problems = pattern_problems(items)
    if problems:
        raise ValueError("; ".join(problems))
    out = []
    for text in items:
        fixed = _SERIES_COMMENT_RE.match(text)
        out.append(MetricPattern(re.compile(text), fixed.group("series") if fixed else None))
    return tuple(out)


def fixed_series_pattern(series: str, regex: str) -> str:
    """The canonical one-string form of ``series: regex`` (a job file mapping entry)."""
    return f"(?#series={series}){regex}"


def effective_line(line: str) -> str:
    """What of a raw line counts: without its line end, and only the last ``\\r`` segment
    (a progress bar redraws itself with ``\\r``; earlier states are not output)."""
    line = line.rstrip("\n").rstrip("\r")
    cut = line.rfind("\r")
    return line[cut + 1 :] if cut >= 0 else line


def _by_patterns(line: str, patterns: Sequence[MetricPattern]) -> list[ConsolePoint] | None:
    points: list[ConsolePoint] = []
    matched = False
    for pattern in patterns:
        for m in pattern.regex.finditer(line):
            matched = True
            groups = m.groupdict()
            series = pattern.series or groups.get("name")
            value = number(groups.get("value") or "")
            if not series or value is None:
                continue
            step_text = groups.get("step")
            step = None
            if step_text:
                found = number(step_text)
                step = as_step(found) if found is not None else None
            points.append((series, step, value))
    return points if matched else None


def parse_line(line: str, patterns: Sequence[MetricPattern] = ()) -> list[ConsolePoint]:
    """The points of one console line (see the module docstring); never raises."""
    text = effective_line(line)
    if len(text) > MAX_LINE_BYTES or not text:
        return []
    if patterns:
        found = _by_patterns(text, patterns)
        if found is not None:
            return found
    return builtin_points(text)


def parse_lines(
    lines: Iterable[str], patterns: Sequence[MetricPattern] | Iterable[str] = ()
) -> list[ConsolePoint]:
    """The points of every line, in order. ``patterns`` compiled or as strings."""
    compiled = tuple(p if isinstance(p, MetricPattern) else compile_patterns([p])[0]
                     for p in patterns)
    points: list[ConsolePoint] = []
    for line in lines:
        points.extend(parse_line(line, compiled))
    return points


class ConsoleSplitter:
    """Console bytes in, complete effective lines out, with a bounded carry.

    The carry is the unfinished last line reduced to what can still matter: its last
    ``\\r`` segment (plus one ``\\r`` if it ended with some). A segment longer than
    ``MAX_LINE_BYTES`` is dropped and marked overlong, so neither a 1 GB line nor an
    hour of progress-bar redraws is held in memory.
    """

    def __init__(self, carry: bytes = b"", overlong: bool = False) -> None:
        self._carry = b""
        self._overlong = overlong
        self._absorb(carry)

    @classmethod
    def from_log_tail(cls, tail: bytes, at_file_start: bool) -> ConsoleSplitter:
        """The splitter a stream would have after ``tail``, the last bytes of a stored log
        (``at_file_start``: ``tail`` is the whole log). ``tail`` should be at least
        ``MAX_LINE_BYTES + 2`` bytes when the log is that long."""
        cut = tail.rfind(b"\n")
        if cut >= 0:
            return cls(tail[cut + 1 :])
        splitter = cls(tail)
        if not at_file_start and b"\r" not in tail.rstrip(b"\r"):
            # The line began before the window: it is longer than any line we read.
            splitter._carry, splitter._overlong = b"\r" if tail.endswith(b"\r") else b"", True
        return splitter

    @property
    def carry(self) -> bytes:
        return self._carry

    @property
    def overlong(self) -> bool:
        return self._overlong

    def _absorb(self, data: bytes) -> None:
        """Add bytes that hold no ``\\n`` to the carry, keeping it compact."""
        if not data:
            return
        whole = self._carry + data
        if b"\r" in whole:
            stripped = whole.rstrip(b"\r")
            segment_at = stripped.rfind(b"\r") + 1
            if segment_at > 0:
                self._overlong = False  # a new segment began after the overlong one
            segment = b"" if self._overlong else stripped[segment_at:]
            trail = b"\r" if len(stripped) < len(whole) else b""
            self._carry = segment + trail
        elif not self._overlong:
            self._carry = whole
        segment = self._carry.rstrip(b"\r")
        if len(segment) > MAX_LINE_BYTES:
            self._carry, self._overlong = self._carry[len(segment) :], True

    def feed(self, data: bytes) -> list[str]:
        """The lines that ``data`` completes (decoded, replacement characters for bad
        UTF-8), as :func:`effective_line` gives them."""
        lines: list[str] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            self._absorb(data[start:end])
            if not self._overlong:
                raw = self._carry.rstrip(b"\r")
                if raw:
                    lines.append(raw.decode("utf-8", errors="replace"))
            self._carry, self._overlong = b"", False
            start = end + 1
        if start < len(data):
            self._absorb(data[start:])
        return lines
