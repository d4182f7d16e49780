"""The one rule for showing others' text: terminal-safe text, CSV formula guard, and the
``logs --safe`` console filter, chunked every way."""

from __future__ import annotations

import csv
import io
import re

import pytest

from app.core.safetext import ConsoleFilter, csv_text, terminal_safe

# What a terminal acts on, or what disguises text: ESC and 8-bit C1 controls, BEL, BS,
# CR, DEL, NUL; bidi overrides/isolates/marks, zero-width and line-separator characters.
_ACTIVE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                     "\u2066-\u2069\ufeff\ud800-\udfff]")

HOSTILE = ["\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "a\x08b", "x\ry", "\x7f", "\x00",
           "\u202eevil\u202c", "\u2066iso\u2069", "\u200e\u200f\u061c", "line\u2028sep",
           "zero\u200bwidth", "\x85next", "\x90dcs\x9c", "\udcff"]


@pytest.mark.parametrize("text", HOSTILE)
def test_terminal_safe_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = terminal_safe(text)
    assert not _ACTIVE.search(shown)
    assert terminal_safe(shown) == shown  # idempotent: escapes are plain text
    shown.encode("utf-8")  # no lone surrogate left to fail the write


def test_removed_characters_show_as_escapes_not_merged_text() -> None:
    assert terminal_safe("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert terminal_safe("\x9b31mred") == "\\x9b31mred"
    assert terminal_safe("a\x08b") == "a\\x08b"  # never passes for "b"
    assert terminal_safe("\u202eexe.txt") == "\\u202eexe.txt"
    assert terminal_safe("run\udcff") == "run\\xff"  # an undecodable byte, as the byte
    assert terminal_safe("\U000e0041") == "\\U000e0041"  # an invisible tag character


def test_ordinary_text_passes_unchanged() -> None:
    for text in ("loss/train", "lr=3e-4 -0.5 +1", "°C … 日本語 ß", "", "a\\x1b literal",
                 "naïve café", "\u00a0nbsp"):
        assert terminal_safe(text) == text


def test_keep_lets_newlines_and_tabs_through_where_asked() -> None:
    assert terminal_safe("a\nb\tc") == "a\\x0ab\\x09c"
    assert terminal_safe("a\nb\tc\r", keep="\n\t") == "a\nb\tc\\x0d"
    assert terminal_safe("a\n\x1b[2J", keep="\n") == "a\n\\x1b[2J"


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "+1+2", "@SUM(A1)", "-2+3",
                                  "\t=1", "\r=1", "\uff1d1+1"])
def test_csv_text_guards_what_a_spreadsheet_would_evaluate(text: str) -> None:
    assert csv_text(text) == "'" + text


@pytest.mark.parametrize("text", ["loss", "", "a=b", "lr-0.1", "1e-3", " =x", "'quoted"])
def test_csv_text_leaves_other_text_alone(text: str) -> None:
    assert csv_text(text) == text


def test_csv_guarded_cells_survive_quoting() -> None:
    buf = io.StringIO()
    csv.writer(buf).writerow([csv_text('=HYPERLINK("http://x","a,b")'), "-0.5"])
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == [
        '\'=HYPERLINK("http://x","a,b")', "-0.5"]


CONSOLE = (b"\x1b[1;31mERROR\x1b[0m boom\r\n"            # colours, CRLF
           b"\x1b]0;pwned\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\n"  # title, hyperlink
           b"\x1b[2J\x1b[Hclear\x1bc\x1b(B\n"            # clear, home, reset, charset
           b"\x9b31m raw C1 byte\n"                        # not UTF-8: shown as \x9b
           b"\xc2\x9b31mC1 CSI\xc2\x9d0;t\xc2\x9c\n"       # 8-bit CSI and OSC as characters
           b"epoch 1\r 10%|#\r 50%|##\r100%|###\r\n"       # a progress bar's redraws
           b"bell\x07 bs\x08 del\x7f nul\x00\ttab \xe2\x80\xae\n"   # ... and U+202E
           b"\xff\xfe caf\xc3\xa9 \xe6\x97\xa5\n"
           b"unterminated \x1b]0;title\n"
           b"last line, no newline\x1b[0m")
EXPECTED = ("ERROR boom\n"
            "link\n"
            "clear\n"
            "\\x9b31m raw C1 byte\n"
            "C1 CSI\n"
            "100%|###\n"
            "bell\\x07 bs\\x08 del\\x7f nul\\x00\ttab \\u202e\n"
            "\\xff\\xfe café 日\n"
            "unterminated \\x1b]0;title\n"
            "last line, no newline")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(CONSOLE)])
def test_console_filter_gives_the_same_text_however_the_stream_is_chunked(size: int) -> None:
    screen = ConsoleFilter()
    out = "".join(screen.feed(CONSOLE[i : i + size]) for i in range(0, len(CONSOLE), size))
    out += screen.finish()
    assert out == EXPECTED
    assert not _ACTIVE.search(out.replace("\n", "").replace("\t", ""))


def test_console_filter_prints_a_line_when_it_ends() -> None:
    screen = ConsoleFilter()
    assert screen.feed(b"step 1\nstep 2 ") == "step 1\n"
    assert screen.feed(b"\r 10%") == ""
    assert screen.feed(b"\r 20%\n") == " 20%\n"
    assert screen.finish() == ""


def test_console_filter_holds_bounded_memory_for_endless_redraws_and_long_lines() -> None:
    screen = ConsoleFilter(max_held=1000)
    out = "".join(screen.feed(b"\r step %6d" % i) for i in range(5000))
    assert out == ""
    assert len(screen._held) <= 1000
    assert screen.finish() == " step   4999"

    long = ConsoleFilter(max_held=1000)
    pieces = [long.feed(b"x" * 300 + b"\x1b[31m") for _ in range(10)]
    pieces.append(long.feed(b"\x1b[0m\n"))
    assert "".join(pieces) == "x" * 3000 + "\n"
    assert len(long._held) <= 1000 + 400
