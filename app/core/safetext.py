"""Text from hosts and other users made safe to show: on a terminal, where no control
character or escape sequence may act, and in a spreadsheet, where no cell may be read as
a formula.

One rule for the whole app: the CLI prints host and user text through
:func:`terminal_safe`, ``labdeck logs --safe`` passes a run's console through
:class:`ConsoleFilter`, and every CSV export passes its text cells through
:func:`csv_text`.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata

# Characters that are not shown as themselves: controls (C0, DEL and C1: a terminal acts
# on them, ESC and CSI 0x9b start escape sequences), format characters (bidi overrides
# and isolates reorder what follows, zero-width ones hide text: both can disguise a
# name), lone surrogates (undecodable bytes; they cannot even be encoded) and the Unicode
# line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# OWASP's CSV injection list (a spreadsheet reads such a cell as a formula or starts
# parsing one), plus the full-width forms that some spreadsheet locales accept the same way.
_FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")

# A complete terminal escape sequence: CSI (colours, cursor moves, clearing), a control
# string (OSC: window title, hyperlinks; DCS, SOS, PM, APC) ended by BEL or ST, or a short
# ESC sequence (character sets, reset, keypad modes). A string body stops at the next
# introducer, so a line full of unterminated ones costs linear time.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x90\x98\x9c-\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-OQ-WYZ\\`-~]"
)
_INTRODUCERS = "\x1b\x90\x98\x9b\x9d\x9e\x9f"
# The most of an unterminated console line a ConsoleFilter holds before printing it.
MAX_HELD_CHARS = 1 << 20
# An escape introducer this close to the end of a held line may start a sequence that the
# next chunk completes: it stays held when a long line is printed in pieces.
_SEQUENCE_ROOM = 4096


def terminal_safe(text: str, keep: str = "") -> str:
    """``text`` with every character a terminal would act on, or that would disguise the
    text, written as a visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``); the characters
    in ``keep`` (say ``"\\n\\t"`` for multi-line output) pass as they are.

    A removed character is never silently dropped, so ``a\\x08b`` cannot pass for ``b``.
    Idempotent: an escape is plain printable text.
    """
    return _candidates(keep).sub(_visible, text)


@functools.lru_cache(maxsize=8)
def _candidates(keep: str) -> re.Pattern[str]:
    # Printable ASCII is always safe: mostly-ASCII text costs one regex scan, and only the
    # other characters have their Unicode category looked up.
    kept = "".join(re.escape(ch) for ch in keep)
    return re.compile(f"[^\\x20-\\x7e{kept}]")


def _visible(match: re.Match[str]) -> str:
    return _escape(match.group())


@functools.lru_cache(maxsize=4096)
def _escape(ch: str) -> str:
    if unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
        return ch
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def csv_text(text: str) -> str:
    """A text cell for a CSV file: a leading ``'`` where a spreadsheet would otherwise
    take it for a formula (it starts with ``=``, ``+``, ``-``, ``@``, tab or CR).

    Only for text (series names, run labels). Numbers that Labdeck writes itself stay as
    they are: ``-0.5`` is a number to a spreadsheet, and a guard would turn it into text.
    """
    return "'" + text if text[:1] in _FORMULA_STARTS else text


class ConsoleFilter:
    """A run's raw console bytes in, text that cannot act on a terminal out
    (``labdeck logs --safe``).

    Each line comes out the way the run's window shows it: escape sequences (colours,
    titles, clears) removed, only the last ``\\r`` redraw of a progress bar kept, other
    control characters written as visible escapes (tabs stay), bytes that are not UTF-8
    as ``\\xff``. Chunks may split a character or a sequence anywhere. A line is printed
    once its newline arrives (a progress bar: when it finishes) or at :meth:`finish`; a
    line longer than :data:`MAX_HELD_CHARS` is printed in pieces as it grows.
    """

    def __init__(self, max_held: int = MAX_HELD_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        self._held = ""
        self._max_held = max_held

    def feed(self, data: bytes) -> str:
        """The complete lines that ``data`` ends, each with its newline."""
        return self._lines(self._decoder.decode(data))

    def finish(self) -> str:
        """Whatever is still held: the last line, without a newline if it had none."""
        out = self._lines(self._decoder.decode(b"", final=True))
        held, self._held = self._held, ""
        return out + (_clean_line(held) if held else "")

    def _lines(self, text: str) -> str:
        if not text:
            return ""
        lines = (self._held + text).split("\n")
        held = lines.pop()
        out = "".join(_clean_line(line) + "\n" for line in lines)
        if len(held) > self._max_held:
            piece, held = self._bound(held)
            out += piece
        self._held = held
        return out

    def _bound(self, held: str) -> tuple[str, str]:
        """(what to print now, what to hold) for an unterminated line grown too long."""
        # Only the last redraw shows: a progress bar redrawing for hours is not kept whole.
        redraw = held.rstrip("\r").rfind("\r")
        if redraw > 0:
            held = held[redraw:]
        if len(held) <= self._max_held:
            return "", held
        # One long line without redraws: print it without a newline of ours and go on
        # holding only what may be an escape sequence the next chunk completes.
        cut = max(held.rfind(ch) for ch in _INTRODUCERS)
        if cut < len(held) - _SEQUENCE_ROOM or cut <= 0:
            cut = len(held)
        return _clean_line(held[:cut]), held[cut:]


def _clean_line(line: str) -> str:
    """One console line (no newline) as a terminal leaves it, safe to print."""
    line = _SEQUENCE.sub("", line).rstrip("\r")
    return terminal_safe(line[line.rfind("\r") + 1 :], keep="\t")
