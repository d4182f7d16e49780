"""The contract every parser of outside input keeps under fuzzing, and mutation strategies.

Contract: for any input a parser returns a value or raises its own documented error type
with a message; never another exception and never a hang. ``holds`` checks one input under
a wall-clock bound (SIGALRM, main thread), ``mutated`` derives inputs from real samples.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reliability.scale import FULL, pick


class Hang(Exception):
    """A parser ran past its time bound."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise Hang in this (main) thread after ``seconds``; restores pytest-timeout's own
    SIGALRM timer afterwards, less the time spent here."""

    def on_alarm(_signum: int, _frame: object) -> None:
        raise Hang(f"no answer within {seconds:g} s")

    started = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            left = max(0.01, old_delay - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def holds(
    parse: Callable[[Any], Any],
    data: Any,
    errors: tuple[type[BaseException], ...],
    seconds: float = 5.0,
) -> Any:
    """``parse(data)``: its value, or the documented error (which must carry a message)."""
    with time_bound(seconds):
        try:
            return parse(data)
        except errors as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            return exc


def fuzz(quick: int, full: int) -> settings:
    """Hypothesis settings for one fuzz target: few examples, derandomised in the quick
    variant (the test command must not flake), many random ones in the full run."""
    return settings(
        max_examples=pick(quick, full),
        deadline=None,  # time_bound is the hang check; a deadline would flake on 2 busy cores
        derandomize=not FULL,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
    )


# Bytes that break parsers: NUL, invalid UTF-8, a lone surrogate, quotes, brackets, YAML
# anchors and tags, huge and non-finite numbers, line ends of every kind.
TOKENS = [
    b"\x00", b"\xff", b"\xed\xa0\x80", b"\xc3", b"\n", b"\r", b"\r\n", b"\t", b" ", b"'",
    b'"', b"\\", b"[", b"]", b"{", b"}", b",", b":", b"=", b"#", b"&a ", b"*a", b"!!",
    b"<<: ", b"%", b"-", b".", b"9" * 400, b"1" * 4400, b"-1", b"1e999", b"nan", b"NaN",
    b"inf", b"[N/A]", b"0x", b"\xe2\x80\xa8", b"\xc2\x85", "é".encode(), b"~", b"*",
]


@st.composite
def mutated(draw: st.DrawFn, samples: Sequence[bytes], max_ops: int = 6) -> bytes:
    """A real sample with a few byte-level mutations: flips, inserted tokens or random
    bytes, deletions, duplicated slices, truncation."""
    data = bytearray(draw(st.sampled_from(list(samples))))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["flip", "token", "random", "delete", "dup", "cut"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            at = min(pos, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "random":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "dup":
            end = min(len(data), pos + draw(st.integers(1, 64)))
            data[pos:pos] = data[pos:end] * draw(st.integers(1, 8))
        elif op == "cut":
            del data[pos:]
    return bytes(data)
