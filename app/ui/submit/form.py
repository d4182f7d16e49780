"""The submit dialog's values turned into the specs it queues, and every problem with them.

Plain Python, so the rules can be read (and tested) without widgets:

- A parameter cell holds one value, or several separated by commas (``1e-3, 3e-4``): each
  such cell is a sweep dimension, and the runs are every combination (app.core.jobs.sweep).
  A value in quotes is one text value even with commas in it; an empty cell is left out.
- The command holds the program and its fixed arguments; the table's parameters are added
  to it as ``--name value`` (app.core.jobs.argparams), so a run's arguments say exactly what it
  used. A parameter in both the command and the table is a problem, not a silent choice.
- Settings the user changed in the shared part of the form (host, GPUs, environment, …)
  apply to every run; the others keep what each file or cloned spec says.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.jobs.argparams import Options, apply_params, convert_value, param_key, parse_params
from app.core.jobs.feasibility import HostFacts
from app.core.jobs.jobfields import parse_duration, parse_memory_mib
from app.core.jobs.jobspec import ENV_NAME_RE, PARAM_NAME_RE, JobSpec, show, validate
from app.core.jobs.sweep import MAX_COMBINATIONS, SweepTooLarge, expand_grid, grid_size, sweep_name
from app.ui.submit.items import SubmitItem, value_text

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True, slots=True)
class ParamRow:
    name: str
    text: str
    is_flag: bool = False


@dataclass(slots=True)
class Built:
    """What the form would queue now: the specs, their count, and what is wrong."""

    specs: list[JobSpec] = field(default_factory=list)
    count: int = 0
    problems: list[str] = field(default_factory=list)
    # The sweep's dimensions, "lr 2 × seed 3" (empty without a sweep).
    grid: str = ""


def parse_cell(name: str, text: str, is_flag: bool = False) -> tuple[list[Any], str | None]:
    """A cell's values (one, several for a sweep, none when empty) and a problem or None."""
    text = text.strip()
    if not text:
        return [], None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        parts = [text[1:-1]]
        quoted = True
    else:
        parts = [p.strip() for p in text.split(",")]
        quoted = False
    if any(not p for p in parts) and not quoted:
        return [], f"params: {name}: an empty value between commas in {show(text)}"
    values: list[Any] = []
    for part in parts:
        if is_flag:
            low = part.lower()
            if low not in _TRUE | _FALSE:
                return [], f"params: {name}: a flag is true or false, got {show(part)}"
            values.append(low in _TRUE)
        else:
            values.append(part if quoted else convert_value(part))
    if len({(type(v), v) for v in values}) != len(values):
        return [], f"params: {name}: a value appears twice in {show(text)}"
    return values, None


def read_params(rows: Sequence[ParamRow]) -> tuple[dict[str, Any], dict[str, list[Any]],
                                                   list[str]]:
    """Fixed values, sweep dimensions (cells with several values) and problems."""
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    problems: list[str] = []
    seen: set[str] = set()
    for row in rows:
        name = row.name.strip()
        if not name and not row.text.strip():
            continue
        if not PARAM_NAME_RE.fullmatch(name):
            problems.append(f"params: {show(name)} is not a valid parameter name (letters, "
                            "digits, _ . -; starting with a letter)")
            continue
        if param_key(name) in seen:
            problems.append(f"params: {name} is listed twice")
            continue
        seen.add(param_key(name))
        values, problem = parse_cell(name, row.text, row.is_flag)
        if problem:
            problems.append(problem)
        elif len(values) == 1:
            fixed[name] = values[0]
        elif values:
            grid[name] = values
    return fixed, grid, problems


def sweep_count(rows: Sequence[ParamRow]) -> int:
    """How many runs the table asks for (1 when it has no sweep, even with problems)."""
    _fixed, grid, _problems = read_params(rows)
    return grid_size(grid)


def edited_specs(base: JobSpec, name: str, command: str, rows: Sequence[ParamRow],
                 options: Options = ()) -> Built:
    """The runs of one editable item: ``base`` with the form's name, command and table."""
    out = Built()
    fixed, grid, out.problems = read_params(rows)
    out.count = grid_size(grid)
    out.grid = " × ".join(f"{k} {len(v)}" for k, v in grid.items())
    if base.shell is not None:
        if fixed or grid:
            out.problems.append("params: a shell line is run as written; put parameters "
                                "in it, or clone a run that has a command")
        spec = dataclasses.replace(base, name=name.strip(), shell=command)
        out.specs = [spec]
        out.count = 1
        return out
    try:
        words = shlex.split(command)
    except ValueError as e:
        out.problems.append(f"command: cannot split it into words: {e}")
        return out
    in_command = parse_params(words[1:], options)
    for key in in_command:
        if param_key(key) in {param_key(k) for k in (*fixed, *grid)}:
            out.problems.append(f"params: {key} is in the command and in the table; "
                                "keep it in one place")
    if out.count > MAX_COMBINATIONS:
        out.problems.append("params: " + str(SweepTooLarge(
            out.count, {k: len(v) for k, v in grid.items()}, MAX_COMBINATIONS)))
        return out
    # Arguments follow the table's order, swept or not.
    order = [k for k in dict.fromkeys(r.name.strip() for r in rows) if k in fixed or k in grid]
    for combo in expand_grid(grid):
        values = {k: combo[k] if k in combo else fixed[k] for k in order}
        argv, _ = apply_params(words, values, replace=True, options=options)
        run_name = sweep_name(name.strip(), combo) if grid else name.strip()
        out.specs.append(dataclasses.replace(
            base, name=run_name, argv=tuple(argv), params={**in_command, **values}))
    return out


# -- the shared settings --------------------------------------------------------------
def parse_shared(texts: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Spec fields from the shared settings' raw values (only those given), and problems.

    Keys: ``host`` (name or ""), ``pin`` ("0, 1"), ``gpus`` (int), ``memory`` ("8GiB"),
    ``priority`` (int), ``time_limit`` ("2h"), ``tags`` ("a, b"), ``retry`` (bool),
    ``conda_env``, ``venv``, ``setup`` (lines), ``env`` (list of (name, value)).
    """
    fields: dict[str, Any] = {}
    problems: list[str] = []
    if "host" in texts:
        fields["hosts"] = (texts["host"],) if texts["host"] else ()
    if "gpus" in texts:
        fields["gpus"] = int(texts["gpus"])
    if "pin" in texts:
        pins, problem = _pins(texts["pin"])
        if problem:
            problems.append(problem)
        else:
            fields["pin_gpus"] = pins
            if pins:
                fields["gpus"] = len(pins)
    if "memory" in texts:
        text = str(texts["memory"]).strip()
        mib = parse_memory_mib(text) if text else None
        if text and mib is None:
            problems.append(f"min_free_mem_mib: must be a size like 8GiB or 8192 (MiB), "
                            f"got {show(text)}")
        else:
            fields["min_free_mem_mib"] = mib
    if "priority" in texts:
        fields["priority"] = int(texts["priority"])
    if "time_limit" in texts:
        text = str(texts["time_limit"]).strip()
        seconds = parse_duration(text) if text else None
        if text and seconds is None:
            problems.append(f"time_limit: must be a duration like 2h30m, 90m or 3600, "
                            f"got {show(text)}")
        else:
            fields["time_limit_s"] = seconds
    if "tags" in texts:
        fields["tags"] = tuple(t.strip() for t in str(texts["tags"]).split(",") if t.strip())
    if "retry" in texts:
        fields["retry_on_lost"] = bool(texts["retry"])
    for key in ("conda_env", "venv"):
        if key in texts:
            fields[key] = str(texts[key]).strip() or None
    if "setup" in texts:
        fields["setup"] = tuple(line for line in str(texts["setup"]).splitlines()
                                if line.strip())
    if "env" in texts:
        env: dict[str, str] = {}
        for name, value in texts["env"]:
            name = name.strip()
            if not name and not value:
                continue
            if not ENV_NAME_RE.fullmatch(name):
                problems.append(f"env: {show(name)} is not a valid variable name (letters, "
                                "digits, _; not starting with a digit)")
            elif name in env:
                problems.append(f"env: {name} is set twice")
            else:
                env[name] = value
        fields["env"] = env
    return fields, problems


def _pins(text: str) -> tuple[tuple[int, ...], str | None]:
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        return (), f"pin_gpus: GPU indices are whole numbers like 0 or 0, 1, got {show(text)}"
    return tuple(int(p) for p in parts), None


def build(items: Sequence[SubmitItem], edited: Built | None, shared: Mapping[str, Any],
          hosts: Collection[str], facts: Mapping[str, HostFacts]) -> Built:
    """Every run the dialog would queue, with the shared settings applied, checked."""
    out = Built()
    for item in items:
        out.problems.extend(_labelled(item, p, len(items)) for p in item.problems)
    if edited is not None:
        out.problems.extend(edited.problems)
    fields, problems = parse_shared(shared)
    out.problems.extend(problems)
    specs: list[JobSpec] = []
    for item in items:
        if item.editable:
            made = edited if edited is not None and len(items) == 1 else default_specs(item)
            out.grid = made.grid if len(items) == 1 else ""
            specs.extend(made.specs)
            out.count += made.count
            if made is not edited:
                out.problems.extend(_labelled(item, p, len(items)) for p in made.problems)
        elif item.runs:
            specs.extend(item.runs)
            out.count += len(item.runs)
        elif item.base is not None:
            specs.append(item.base)
            out.count += 1
    if not hosts:
        out.problems.append("hosts: no hosts yet; add one with Add host… first")
    seen = set(out.problems)
    for spec in specs:
        spec = dataclasses.replace(spec, **fields)
        out.specs.append(spec)
        for problem in validate(spec, hosts, facts):
            if problem not in seen:
                seen.add(problem)
                out.problems.append(problem)
    if out.problems:
        out.specs = []
    return out


def default_specs(item: SubmitItem) -> Built:
    """An editable item as dropped: its command with its parameters' starting values."""
    assert item.base is not None
    rows = [ParamRow(name, value_text(value), isinstance(value, bool))
            for name, value in item.values.items()]
    command = item.base.shell if item.base.shell is not None else shlex.join(item.base.argv)
    return edited_specs(item.base, item.base.name, command, rows, item.args)


def _labelled(item: SubmitItem, problem: str, count: int) -> str:
    # A job file's own problems already name the file; others say which item they are about.
    if count == 1 or item.kind == "jobfile" or problem.startswith(item.label):
        return problem
    return f"{item.label}: {problem}"


def describe_ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:3])
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"Queued {len(ids)} run{'s' if len(ids) != 1 else ''}: {shown}{more}"
