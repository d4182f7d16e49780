"""Metric points from a console line that prints a whole mapping: a JSON object per line
(``print(json.dumps(stats))``, fairseq's ``--log-format json``, detectron2's
``json_stats``) or a Python dict repr (Hugging Face Trainer's ``{'loss': 0.33, ...}``).

The mapping may follow a prefix (a logger's time and level). Numbers, and strings that
are nothing but a number (fairseq writes its values as strings), become values; nested
mappings give ``outer/inner`` names; anything else is left out. A step-like key gives
the step; ``epoch`` is a series, and the step when there is no other.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

MAX_MAPPING_CHARS = 16 * 1024
MAX_DEPTH = 3
# What numpy 2 and torch put in a dict's repr for a scalar: read as the bare number.
_WRAPPED_SCALAR_RE = re.compile(
    r"\b(?:np\.(?:float|int|uint)\d*|numpy\.(?:float|int)\d*|tensor)\(\s*"
    r"([-+]?[\d.eE+-]+|nan|inf)\s*(?:,[^()]*)?\)")
_BARE_SPECIAL_RE = re.compile(r"(?<![\w'\"])(nan|-?inf)(?![\w'\"])")
_NUMBER_TEXT_RE = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*")

Point = tuple[str, int | None, float]


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    cleaned = _WRAPPED_SCALAR_RE.sub(r"\1", text)
    # A repr's bare nan / inf are no literals: quoted, they read as the numbers they are.
    cleaned = _BARE_SPECIAL_RE.sub(r"'\1'", cleaned)
    try:
        return ast.literal_eval(cleaned)  # literals only: text from a host is data
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _value(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str) and (_NUMBER_TEXT_RE.fullmatch(raw)
                                 or raw.strip().lower() in ("nan", "inf", "-inf")):
        return float(raw)
    return None


def _flatten(obj: dict[Any, Any], prefix: str, depth: int, out: list[tuple[str, float]]) -> None:
    for key, raw in obj.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 100:
            continue
        name = prefix + "_".join(key.split())
        if isinstance(raw, dict) and depth < MAX_DEPTH:
            _flatten(raw, name + "/", depth + 1, out)
            continue
        value = _value(raw)
        if value is not None:
            out.append((name, value))


def mapping_points(line: str, step_keys: tuple[str, ...], epoch_key: str) -> list[Point] | None:
    """The points of a line that prints a mapping, or None when it prints none."""
    start, end = line.find("{"), line.rfind("}")
    if start < 0 or end <= start or end - start > MAX_MAPPING_CHARS:
        return None
    obj = _load(line[start:end + 1])
    if not isinstance(obj, dict):
        return None
    pairs: list[tuple[str, float]] = []
    _flatten(obj, "", 1, pairs)
    if not pairs:
        return None
    steps: dict[str, int] = {}
    epoch: int | None = None
    values: list[tuple[str, float]] = []
    for name, value in pairs:
        low = name.lower()
        whole = math.isfinite(value) and value.is_integer() and abs(value) < 2**63
        if low in step_keys and whole:
            steps.setdefault(low, int(value))
            continue
        if low == epoch_key and whole and epoch is None:
            epoch = int(value)
        values.append((name, value))
    step = next((steps[k] for k in step_keys if k in steps), epoch)
    return [(name, step, value) for name, value in values]
