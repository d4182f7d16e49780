"""The built-in reading of a console line: which ``name value`` pairs in it are metric
points (see ``app.core.console.parse`` for the rules in short).

A line counts only when it says plainly that it reports values:
- an explicit ``name=number`` or ``name: number`` pair (``loss=0.3``, ``acc: 95.1%``);
- or fields split by ``|`` (fairseq, Megatron), by tabs, or by commas after a leading
  counter (``iter 2920: loss 3.98, mfu 45%``, nanoGPT), at least two of them ``name
  number`` (a name may be several words: ``number of skipped iterations: 0`` is one
  series, ``number_of_skipped_iterations``);
- or a whole mapping printed on the line (``console_mapping``).
Never a value: a number followed by a unit, ``/``, ``:`` or more digits (clock times,
``3.2s``, ``9913/10000``, versions, addresses, dates); a source location
(``gpu_resources.cc:61``); a process id, port, rank or version; when in doubt, no point.
"""

from __future__ import annotations

import math
import re

from app.core.console.mapping import mapping_points

Point = tuple[str, int | None, float]

NUMBER = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?))"
# What may follow a value: the end, blanks, or punctuation that closes a field.
_END = r"(?=$|[\s,;|)\]}'\"])"
# Step-like keys, preferred first when a line has several.
STEP_KEYS = ("step", "global_step", "iteration", "iter", "it", "num_updates")
EPOCH = "epoch"
_COUNTERS = r"global_step|step|iteration|iter|it|epoch"
# ``name=1.5`` / ``name: 1.5`` / ``acc: 95%`` (a step or epoch may read ``3/10``).
# Not after ``:`` (``device:GPU:0`` is an identifier); a ``%`` before ``|`` is a bar's.
_PAIR_RE = re.compile(
    rf"(?<![\w./@:-])(?P<key>[A-Za-z_][\w./@-]*+)\s*+(?P<sep>[=:])\s*(?P<num>{NUMBER})"
    rf"(?P<pct>%(?!\|))?(?P<total>/\d+)?{_END}"
)
# ``Train: 3 [ 100/1251 (8%)]`` (timm, PyTorch examples): the number is the epoch.
_EPOCH_OF_BATCHES_RE = re.compile(r"\s*\[\s*\d+\s*/\s*\d+")
# ``step 100``, ``Epoch 3/10``, ``iteration  5426/ 250000``: only for step-like keys.
_COUNTER_RE = re.compile(
    rf"(?<![\w./-])(?P<key>(?i:{_COUNTERS}))[ \t]+"
    r"(?P<num>\d+)(?P<total>[ \t]*/[ \t]*\d+)?(?=$|[\s,;:|)\]}])"
)
# A line that opens with a counter: ``iter 2920:``, `` iteration 5426/ 250000 |``.
_LEAD_RE = re.compile(rf"^\s*\[?{_COUNTER_RE.pattern}\]?\s*[:|,]?")
# A separator followed by something that may start a number: the cheap first look.
_SEP_RE = re.compile(r"[=:]\s*[-+]?(?:[\d.]|[nNiI])")
_NAME_CHAR_RE = re.compile(r"[\w./@-]")
_KEY_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
# One field that is a (possibly several-word) name and a number, nothing else; a running
# average after it, ``Loss 6.9 (7.1)``, is left out.
_WORD = r"[A-Za-z_][\w./@-]*"
_FIELD_RE = re.compile(
    rf"\s*(?P<key>{_WORD}(?:[ ]{_WORD}){{0,5}}(?:[ ]\([A-Za-z/%]{{1,8}}\))?)"
    rf"\s*(?P<sep>[=:])?\s*(?P<num>{NUMBER})(?P<pct>%(?!\|))?"
    rf"(?:\s*\(\s*{NUMBER}\s*\))?\s*"
)
_FIELD_SPLIT_RE = re.compile(r"\||\t|,|;")
_SOURCE_FILE_RE = re.compile(
    r"\.(?:py|pyx|cc|cpp|cxx|c|h|hpp|cu|cuh|js|ts|go|rs|java|scala|rb|sh|lua|jl)$", re.I)
# Names of things other than training values (as a whole name, or its last word:
# ``MASTER_PORT``, ``local_rank``, ``cuda.version``): never a series.
_NOT_METRICS = frozenset({"pid", "ppid", "tid", "port", "v_num", "rank", "world_size",
                          "version", "ver", "seed"})
_LAST_WORD_RE = re.compile(r"[^_.]+$")
_COUNTER_WORDS = frozenset({"global_step", "step", "iteration", "iter", "it", "epoch"})


def number(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def as_step(value: float) -> int | None:
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None


def series_name(key: str) -> str:
    """``lm loss`` → ``lm_loss``; ``elapsed time per iteration (ms)`` →
    ``elapsed_time_per_iteration_ms``."""
    return "_".join(key.replace("(", " ").replace(")", " ").split())


def is_noise(name: str, sep: str | None, num: str) -> bool:
    """A pair that names no training value: a source location, a pid, port or version."""
    low = name.lower()
    last = _LAST_WORD_RE.search(low)
    if low in _NOT_METRICS or (last is not None and last.group() in _NOT_METRICS):
        return True
    return sep == ":" and num.isdigit() and bool(_SOURCE_FILE_RE.search(name))


def _may_have_pair(line: str) -> bool:
    """Whether some separator followed by a number has a name before it (a superset of
    what ``_PAIR_RE`` finds, found without scanning the line at every position)."""
    for m in _SEP_RE.finditer(line):
        i = m.start() - 1
        while i >= 0 and line[i].isspace():
            i -= 1
        start = i
        while start >= 0 and _NAME_CHAR_RE.match(line, start):
            start -= 1
        if start < i and line[start + 1] in _KEY_START:
            return True
    return False


def _fields(line: str, start: int) -> list[tuple[int, int, str, float]]:
    """``(start, end, series, value)`` of the fields of ``line[start:]`` that are a name
    and a number and nothing else."""
    found = []
    at = start
    for part in _FIELD_SPLIT_RE.split(line[start:]):
        m = _FIELD_RE.fullmatch(part)
        bar = m is not None and m.group("pct") and line.startswith("|", at + len(part))
        if m is not None and not bar and (value := number(m.group("num"))) is not None:
            words = m.group("key").split()
            if len(words) > 1 and words[-1].lower() in _COUNTER_WORDS and as_step(value) \
                    is not None:
                name = words[-1]  # ``validation loss at iteration 5000``: the step
            else:
                name = series_name(m.group("key"))
            if not is_noise(name, m.group("sep"), m.group("num")):
                found.append((at, at + len(part), name, value))
        at += len(part) + 1
    return found


def _pairs(line: str, skip: list[tuple[int, int]]) -> dict[int, tuple[str, float]]:
    """Explicit ``name=value`` / ``name: value`` pairs outside the ``skip`` spans."""
    pairs: dict[int, tuple[str, float]] = {}
    for m in _PAIR_RE.finditer(line):
        if any(a <= m.start() < b for a, b in skip):
            continue
        key = m.group("key")
        if m.group("total") and key.lower() not in (*STEP_KEYS, EPOCH):
            continue  # ``acc: 9913/10000`` is a count, not a value
        if is_noise(key, m.group("sep"), m.group("num")):
            continue
        value = number(m.group("num"))
        if value is None:
            continue
        if as_step(value) is not None and _EPOCH_OF_BATCHES_RE.match(line, m.end()):
            key = EPOCH
        pairs[m.start()] = (key, value)
    return pairs


def builtin_points(line: str) -> list[Point]:
    """The points of one (effective) console line by the built-in rules."""
    lead = _LEAD_RE.match(line)
    if "{" in line and (mapped := mapping_points(line, STEP_KEYS, EPOCH)) is not None:
        before = list(_COUNTER_RE.finditer(line, 0, line.find("{")))
        if before and all(step is None for _n, step, _v in mapped):
            # ``epoch 2: {'accuracy': 0.84}``: the counter just before the mapping.
            step = int(before[-1].group("num"))
            return [(name, step, value) for name, _s, value in mapped]
        return mapped
    # Cheap looks first: most lines of a long console are prose, clock times, bars.
    if lead is None and "|" not in line and "\t" not in line and (
            ("=" not in line and ":" not in line) or not _may_have_pair(line)):
        return []
    fields = []
    if lead is not None or "|" in line or "\t" in line:
        fields = _fields(line, lead.end() if lead is not None else 0)
        if len(fields) < (1 if lead is not None else 2):
            fields = []
    pairs = _pairs(line, [(a, b) for a, b, _n, _v in fields])
    explicit = bool(pairs) or bool(fields)
    for a, _b, name, value in fields:
        pairs.setdefault(a, (name, value))
    for m in _COUNTER_RE.finditer(line):
        if not any(a <= m.start() < b for a, b, _n, _v in fields):
            pairs.setdefault(m.start(), (m.group("key"), float(m.group("num"))))
    if not explicit:
        return []
    steps: dict[str, int] = {}
    epoch: int | None = None
    values: list[tuple[str, float]] = []
    for _pos, (key, value) in sorted(pairs.items()):
        low = key.lower()
        whole = as_step(value)
        if low in STEP_KEYS and whole is not None:
            steps.setdefault(low, whole)
        elif low == EPOCH and whole is not None:
            epoch = whole if epoch is None else epoch
            values.append((EPOCH, value))
        else:
            values.append((key, value))
    found: int | None = next((steps[k] for k in STEP_KEYS if k in steps), epoch)
    return [(series, found, value) for series, value in values]
