"""Pages of a run's console log turned into display text; used on the data worker only.

A 1 GB log is never read whole: the console shows a window of it (the tail while it
follows the run, an earlier page when the user asks) and reads appended bytes in bounded
steps. Bytes are decoded incrementally (a UTF-8 character split across two chunks stays
whole, invalid bytes become U+FFFD), ANSI escape codes are stripped and carriage-return
progress lines collapse to their latest state, as a terminal would show them.
"""

from __future__ import annotations

import codecs
import collections
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PAGE_BYTES = 256 * 1024
MAX_APPEND_BYTES = 1024 * 1024  # more new output than this: show the tail instead
READ_STEP = 256 * 1024
MAX_LINE_CHARS = 10_000
MAX_LINES = 20_000

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class LogSource(Protocol):
    def log_size(self, run_id: str) -> int: ...

    def log_bytes(self, run_id: str, start: int = 0, end: int | None = None) -> bytes: ...


def clean_line(line: str) -> str:
    """One line as a terminal leaves it: last ``\\r`` segment, no escapes, bounded."""
    line = _ANSI.sub("", line.rstrip("\r"))
    if "\r" in line:
        line = line.rsplit("\r", 1)[1]
    line = _CONTROL.sub("", line)
    if len(line) > MAX_LINE_CHARS:
        line = f"{line[:MAX_LINE_CHARS]} … ({len(line) - MAX_LINE_CHARS:,} more characters)"
    return line


@dataclass(frozen=True, slots=True)
class ConsoleUpdate:
    """``replace``: new document text; else ``text`` replaces the last (partial) line."""

    replace: bool
    text: str
    start: int  # byte offset of the first line shown (for "earlier")
    end: int  # bytes of the log consumed so far
    size: int  # the log's size when read
    at_tail: bool  # the window reaches the end of the log
    scroll_to_line: int = -1  # after an "earlier" page: keep the old first line in view


class ConsolePager:
    def __init__(self, source: LogSource, run_id: str) -> None:
        self._source = source
        self._run_id = run_id
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""  # the last line, not terminated yet (raw, for \r handling)
        self._start = 0
        self._end = 0
        # Byte offset where each displayed line starts, for the lines the view keeps.
        self._line_starts: collections.deque[int] = collections.deque(maxlen=MAX_LINES + 1)

    def tail(self) -> ConsoleUpdate:
        """The last page, the view then follows the end."""
        size = self._source.log_size(self._run_id)
        start = max(0, size - PAGE_BYTES)
        data = self._read(start, size)
        skip = 0
        if start > 0:
            cut = data.find(b"\n")
            skip = cut + 1 if cut >= 0 else 0
        return self._load(start + skip, data[skip:], size, at_tail=True)

    def append(self) -> ConsoleUpdate | None:
        """New bytes since the last read, or the tail when too much arrived at once."""
        size = self._source.log_size(self._run_id)
        if size < self._end or size - self._end > MAX_APPEND_BYTES:
            return self.tail()
        if size == self._end:
            return None
        data = self._read(self._end, size)
        offset = self._end
        self._end += len(data)
        text = self._decoder.decode(data)
        lines = (self._pending + text).split("\n")
        self._line_starts.extend(_line_starts(data, offset))
        self._pending = _bounded(lines[-1])
        shown = "\n".join(clean_line(line) for line in lines[:-1])
        tail = clean_line(self._pending)
        out = f"{shown}\n{tail}" if len(lines) > 1 else tail
        return ConsoleUpdate(False, out, self._start, self._end, size, at_tail=True)

    def earlier(self, shown_lines: int) -> ConsoleUpdate | None:
        """The page before the first displayed line, plus what was shown of the window."""
        first = self.first_offset(shown_lines)
        if first <= 0:
            return None
        size = self._source.log_size(self._run_id)
        start = max(0, first - PAGE_BYTES)
        end = min(size, first + PAGE_BYTES)
        data = self._read(start, end)
        skip = 0
        if start > 0:
            cut = data.find(b"\n")
            skip = cut + 1 if cut >= 0 else 0
        last_nl = data.rfind(b"\n")
        body = data[skip:last_nl + 1] if last_nl >= skip else data[skip:]
        before = data[skip:first - start]
        update = self._load(start + skip, body, size, at_tail=False)
        line = before.count(b"\n")
        return ConsoleUpdate(True, update.text, update.start, update.end, size, False, line)

    def first_offset(self, shown_lines: int) -> int:
        """Byte offset of the first of the last ``shown_lines`` lines."""
        if shown_lines <= len(self._line_starts):
            return self._line_starts[-shown_lines] if shown_lines > 0 else self._end
        return self._start

    def _load(self, start: int, data: bytes, size: int, at_tail: bool) -> ConsoleUpdate:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._start = start
        self._end = start + len(data)
        text = self._decoder.decode(data)
        lines = text.split("\n")
        self._line_starts.clear()
        self._line_starts.append(start)
        self._line_starts.extend(_line_starts(data, start))
        self._pending = _bounded(lines[-1])
        shown = "\n".join(clean_line(line) for line in lines)
        return ConsoleUpdate(True, shown, start, self._end, size, at_tail)

    def _read(self, start: int, end: int) -> bytes:
        parts = []
        pos = start
        while pos < end:
            chunk = self._source.log_bytes(self._run_id, pos, min(end, pos + READ_STEP))
            if not chunk:
                break
            parts.append(chunk)
            pos += len(chunk)
        return b"".join(parts)


def _line_starts(data: bytes, offset: int) -> list[int]:
    """Offsets of the lines that start after each newline of ``data`` (at ``offset``)."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    return (newlines + (offset + 1)).tolist()


def _bounded(pending: str) -> str:
    """A line without newline can grow forever (progress bars): keep its latest state."""
    if len(pending) > 4 * MAX_LINE_CHARS and "\r" in pending:
        head, _, last = pending.rstrip("\r").rpartition("\r")
        pending = last if head else pending
    return pending[-4 * MAX_LINE_CHARS:]
