"""Hyper-parameters from command-line arguments, and from a script's argparse declarations.

``--key value``, ``--key=value`` and a bare ``--flag`` in a run's arguments are read as its
parameters, so runs can be compared by them without the user listing them twice. Scripts
are only ever *parsed* (``ast``), never imported or run: a dropped file is not trusted.

The rules, in one place:

- A parameter is a ``--name`` word (letters, digits, ``_ . -``, starting with a letter).
  Its value is the part after ``=``, else the next word unless that looks like an option
  (starts with ``-`` and is not a number such as ``-1`` or ``-1e-3``); otherwise it is a flag
  (``True``). A word ``--`` ends the options; short options and positionals are ignored.
  Only the first value of an option with several (``--layers 1 2``) is read.
- Values that are plainly numbers become ``int``/``float`` (``"007"`` stays text, so it
  still reads back as written); everything else stays text. A later repeat wins, as in
  argparse.
- Names match with ``-`` and ``_`` treated as equal (``--learning-rate`` is
  ``learning_rate``), as argparse does for its ``dest``. With the script's declarations
  at hand, a parameter is named as the script names it: an alias by the option's first
  long name (``--img`` of ``add_argument('--imgsz', '--img')`` is ``imgsz``), and an
  unambiguous abbreviation by the option it abbreviates (``--jsd`` is ``jsd-loss``), as
  argparse resolves them.
- Parameters are written back as ``--key value``, or ``--key=value`` when the value starts
  with ``-``; ``True`` is a bare ``--key``; ``False`` and ``None`` are left out.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_INT_RE = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?")
# A script bigger than this is not a training script worth parsing for its options.
MAX_SCRIPT_BYTES = 2 * 1024 * 1024


def param_key(name: str) -> str:
    """The name under which ``--name`` is compared (``-`` and ``_`` are the same)."""
    return name.replace("-", "_")


def convert_value(text: str) -> Any:
    """``"3"`` → 3, ``"3e-4"`` → 0.0003, anything not plainly a number stays text."""
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return text


def _is_number(text: str) -> bool:
    return bool(_INT_RE.fullmatch(text) or _FLOAT_RE.fullmatch(text))


def _looks_like_option(word: str) -> bool:
    return word.startswith("-") and word != "-" and not _is_number(word)


@dataclass(frozen=True, slots=True)
class _Found:
    name: str
    value: Any
    # Index of the ``--name`` word and how many tokens it spans (1 or 2).
    index: int
    span: int
    inline: bool


Options = Sequence["ScriptArg"] | Collection[str]


def _naming(options: Options) -> tuple[set[str], Callable[[str], str]]:
    """The flags' keys, and how a ``--name`` found in arguments is named: as given, or
    (with the script's declarations) by the option it is an alias or abbreviation of."""
    declared = [o for o in options if isinstance(o, ScriptArg)]
    flags = {param_key(o.name if isinstance(o, ScriptArg) else o)
             for o in options if not isinstance(o, ScriptArg) or o.is_flag}
    if not declared:
        return flags, lambda name: name
    spelled: dict[str, str] = {}  # every long option string → its option's name
    for arg in declared:
        for option in (arg.name, *arg.aliases):
            spelled.setdefault(option, arg.name)

    def canonical(name: str) -> str:
        if name in spelled:
            return spelled[name]
        owners = {owner for option, owner in spelled.items() if option.startswith(name)}
        return owners.pop() if len(owners) == 1 else name  # argparse's allow_abbrev

    return flags, canonical


def _scan(args: Sequence[str], options: Options) -> Iterable[_Found]:
    flag_keys, canonical = _naming(options)
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return
        if word.startswith("--"):
            name, eq, inline_value = word[2:].partition("=")
            if _NAME_RE.fullmatch(name):
                name = canonical(name)
                if eq:
                    yield _Found(name, convert_value(inline_value), i, 1, True)
                elif (
                    param_key(name) not in flag_keys
                    and i + 1 < len(args)
                    and not _looks_like_option(args[i + 1])
                    and args[i + 1] != "--"
                ):
                    yield _Found(name, convert_value(args[i + 1]), i, 2, False)
                    i += 1
                else:
                    yield _Found(name, True, i, 1, False)
        i += 1


def parse_params(args: Sequence[str], options: Options = ()) -> dict[str, Any]:
    """Parameters recognised in ``args`` (see the module docstring for the rules).

    ``options``: the script's declarations (:func:`detect_script_args`), or just the names
    of options known to take no value, so ``--verbose data.csv`` does not swallow the
    positional ``data.csv``.
    """
    found: dict[str, Any] = {}
    for item in _scan(args, options):
        # A later repeat wins; drop an earlier spelling so the latest name is kept.
        for existing in [k for k in found if param_key(k) == param_key(item.name)]:
            del found[existing]
        found[item.name] = item.value
    return found


def format_value(value: Any) -> str:
    """How a parameter value is written as an argument (``3e-4`` → ``"0.0003"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_args(params: Mapping[str, Any]) -> list[str]:
    """``{"lr": 3e-4, "amp": True}`` → ``["--lr", "0.0003", "--amp"]``."""
    out: list[str] = []
    for name, value in params.items():
        out.extend(_one_param(name, value))
    return out


def _one_param(name: str, value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if value is True:
        return [f"--{name}"]
    text = format_value(value)
    if text.startswith("-") and not _is_number(text):
        return [f"--{name}={text}"]
    return [f"--{name}", text]


def apply_params(
    argv: Sequence[str], params: Mapping[str, Any], *, replace: bool, options: Options = ()
) -> tuple[list[str], list[str]]:
    """Add ``params`` to ``argv`` as arguments.

    A parameter already in ``argv`` with the same value is left alone. With a different
    value it is rewritten in place when ``replace`` is true (a sweep varies it), else it is
    reported: the returned list names each such conflict, e.g. ``"lr (args say 0.1)"``.
    Parameters not in ``argv`` are appended.
    """
    out = list(argv)
    conflicts: list[str] = []
    for name, value in params.items():
        hits = [f for f in _scan(out, options) if param_key(f.name) == param_key(name)]
        if not hits:
            out.extend(_one_param(name, value))
            continue
        last = hits[-1]
        if _same(last.value, value):
            continue
        if not replace:
            conflicts.append(f"{name} (args say {format_value(last.value)})")
            continue
        # Remove every earlier spelling, then write the new value where the last one was.
        for hit in sorted(hits, key=lambda f: f.index, reverse=True):
            del out[hit.index : hit.index + hit.span]
        at = last.index - sum(h.span for h in hits[:-1])
        out[at:at] = _one_param(name, value)
    return out, conflicts


def _same(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(found, bool):
        return found is wanted
    if isinstance(wanted, str):
        return convert_value(wanted) == found
    return bool(found == wanted)


@dataclass(frozen=True, slots=True)
class ScriptArg:
    """One ``--option`` declared with argparse's ``add_argument`` in a script."""

    name: str
    # The literal default (converted by ``type=`` when that is int/float, as argparse
    # does); None when there is none or it is not a literal.
    default: Any
    # "int", "float", "str", "bool" for flags, or "" when not known.
    type_name: str = ""
    is_flag: bool = False
    help: str = ""
    choices: tuple[Any, ...] = ()
    # The option's other long names (``add_argument('--imgsz', '--img')``: ``("img",)``).
    aliases: tuple[str, ...] = ()


def detect_script_args(script: str | Path) -> list[ScriptArg]:
    """The long options a Python script declares with argparse, found by parsing it.

    Returns an empty list for anything that is not a readable, parseable Python file:
    a broken script is the user's to fix, not a reason for the submit dialog to fail.
    """
    try:
        path = Path(script)
        if path.stat().st_size > MAX_SCRIPT_BYTES:
            return []
        source = path.read_bytes()
    except OSError:
        return []
    return detect_source_args(source)


def detect_source_args(source: str | bytes) -> list[ScriptArg]:
    """:func:`detect_script_args` on source text."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: dict[str, ScriptArg] = {}
    try:
        nodes = list(ast.walk(tree))
    except RecursionError:
        return []
    for node in nodes:
        arg = _from_call(node)
        if arg is not None and arg.name not in found:
            found[arg.name] = arg
    return list(found.values())


def script_defaults(script: str | Path) -> dict[str, Any]:
    """name → default for the options a script declares (for the submit dialog)."""
    return {a.name: a.default for a in detect_script_args(script)}


_ACTION_FLAGS = {"store_true": False, "store_false": True}
_TYPES = {"int": int, "float": float, "str": str}


def _from_call(node: ast.AST) -> ScriptArg | None:
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
    ):
        return None
    names = [
        a.value[2:]
        for a in node.args
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")
    ]
    names = [n for n in names if _NAME_RE.fullmatch(n)]
    if not names:
        return None
    keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
    action = _literal(keywords.get("action"))
    default = _literal(keywords.get("default"))
    type_node = keywords.get("type")
    type_name = type_node.id if isinstance(type_node, ast.Name) and type_node.id in _TYPES else ""
    is_flag = action in _ACTION_FLAGS
    if is_flag:
        type_name = "bool"
        if "default" not in keywords:
            default = _ACTION_FLAGS[str(action)]
    elif type_name in ("int", "float") and isinstance(default, str):
        # argparse runs ``type`` over a string default; do the same, quietly.
        try:
            default = _TYPES[type_name](default)
        except ValueError:
            pass
    elif not type_name and default is not None and type(default) in (int, float, str):
        type_name = type(default).__name__
    choices = _literal(keywords.get("choices"))
    help_text = _literal(keywords.get("help"))
    return ScriptArg(
        name=names[0],
        aliases=tuple(names[1:]),
        default=default,
        type_name=type_name,
        is_flag=is_flag,
        help=help_text if isinstance(help_text, str) else "",
        choices=tuple(choices) if isinstance(choices, list | tuple) else (),
    )


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
