"""Bounds on what a host may send, in one place, and the plain-text notes that say what
was cut.

A workstation can be misconfigured or compromised; nothing it sends may freeze the window
or grow this app's memory without end. ``ssh_backend.protocol`` applies the per-message
bounds while decoding (keep the first N of a list, clip text, drop control characters);
``app.core.metrics.metricstore`` applies the per-run bounds on metric series. Each bound sits well
above what a real host produces (the agent sends at most ``tails.MAX_POINTS``, 5000,
points a chunk), or says why not.
"""

from __future__ import annotations

import json
from typing import Any

# One JSON line from the agent; a longer one ends the connection before it is parsed.
MAX_LINE_BYTES = 4 * 1024 * 1024
# GPUs of one host (in ``hello`` and in each ``sample``). The largest machines have 16
# (DGX-2, HGX-2). A host announcing 1000 froze the window for 2.5 minutes building tiles;
# 64 tiles whose hostile texts change in every sample stalled it 460-510 ms under a
# flood on a 2-core machine (tests/reliability/test_hostile_host.py), 32 tiles 160-210 ms.
MAX_GPUS = 32
# Processes listed on one GPU in a sample (a tile shows three; the rest are counted).
MAX_PROCESSES = 64
# GPU and host names, UUIDs, user names, versions, boot ids, lease holders, run ids.
MAX_NAME_CHARS = 256
# A process's command line (elided on its tile, in full in a tooltip). Eliding costs in
# proportion to the text and is most of what updating a tile costs (profiled under a
# hostile host whose processes change in every sample).
MAX_COMMAND_CHARS = 256
# Backend details, agent errors, a chunk's warning: sentences, several lines at most.
MAX_DETAIL_CHARS = 2000
# A tailed file's name: ``tb/`` and a relative path no longer than PATH_MAX.
MAX_SOURCE_CHARS = 4100
# Metric points in one tail chunk (the agent sends at most 5000).
MAX_POINTS_PER_CHUNK = 20_000
# Hyper-parameters in one chunk, the length of a name, the size of one value as JSON.
MAX_PARAMS_PER_CHUNK = 1000
MAX_PARAM_NAME_CHARS = 200
MAX_PARAM_VALUE_BYTES = 16 * 1024
# Metric series of one run, and the length of a series name (app.core.metrics.metricstore).
MAX_SERIES_PER_RUN = 1000
MAX_SERIES_NAME_CHARS = 200

# Characters that make text from a host lie about what it says or where it stands: C0/C1
# controls (NUL, escapes, carriage return), line and paragraph separators, zero-width
# characters and the bidi marks, overrides and isolates that hide or reorder text on
# screen ("Trojan source"). And lone surrogates (JSON can spell "\ud800"): such a string
# cannot be encoded, so storing it would fail every transaction it is part of.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x200B, 0x2010), 0x2028,
             0x2029, *range(0x202A, 0x202F), *range(0x2060, 0x2065), *range(0x2066, 0x206A),
             0xFEFF, *range(0xD800, 0xE000)]
_ONE_LINE = {c: "\ufffd" for c in _CONTROLS}
# Multi-line text keeps its line feeds and tabs.
_MULTI_LINE = {c: r for c, r in _ONE_LINE.items() if c not in (0x09, 0x0A)}


def clean_text(value: str, limit: int, *, multiline: bool = False) -> str:
    """``value`` clipped to ``limit`` characters (ending in "…" when clipped), with
    control characters shown as U+FFFD."""
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value.translate(_MULTI_LINE if multiline else _ONE_LINE)


def no_controls(value: str) -> str:
    """``value`` with control characters shown as U+FFFD, not clipped (a name whose
    length is judged later, such as a metric series')."""
    return value if value.isascii() and value.isprintable() else value.translate(_ONE_LINE)


def cut_note(what: str, sent: int, kept: int) -> str:
    """The sentence that says a list was cut, e.g. "host announced 1000 GPUs; showing
    the first 64"."""
    return f"host announced {sent} {what}; showing the first {kept}"


def bound_params(params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``params`` within the bounds above, and a note of what was left out ('' if none)."""
    kept: dict[str, Any] = {}
    dropped = 0
    for raw_name, value in params.items():
        if len(kept) >= MAX_PARAMS_PER_CHUNK or len(raw_name) > MAX_PARAM_NAME_CHARS:
            dropped += 1
            continue
        name = clean_text(raw_name, MAX_PARAM_NAME_CHARS)
        try:
            size = len(json.dumps(value, default=str))
        except (ValueError, RecursionError):  # nested too deep to encode again
            size = MAX_PARAM_VALUE_BYTES + 1
        if size > MAX_PARAM_VALUE_BYTES:
            dropped += 1
            continue
        kept[name] = value
    note = ""
    if dropped:
        note = (f"{dropped} hyper-parameters left out (at most {MAX_PARAMS_PER_CHUNK} a "
                f"chunk, names up to {MAX_PARAM_NAME_CHARS} characters, values up to "
                f"{MAX_PARAM_VALUE_BYTES // 1024} KiB)")
    return kept, note
