"""Job files: YAML or TOML descriptions of one run, or a sweep of runs, read into specs.

A job file is a mapping. What runs is one of ``command:`` (a string split like a shell
would split words, with ``shlex`` — it is *not* run by a shell; or a list), ``shell:`` (a
real shell line, run by bash as written) or ``script:`` + ``args:`` (``.py`` runs under
``python3``, ``.sh`` under ``bash``, or as ``interpreter:`` says). Relative paths in
``script:`` and ``upload:`` are relative to the job file's folder. A local ``script:`` is
uploaded (alone, or inside ``upload:`` when that names its folder); ``upload: false`` means
the script is already on the host, relative to ``workdir:``.

Parameters: ``--key value`` arguments are recognised as params automatically. Explicit
``params:`` are appended as ``--key value`` arguments unless the arguments already carry
that key: with the same value nothing changes, with another value it is an error. A
``sweep:`` block (a grid over params) gives one spec per combination; its value replaces an
existing ``--key`` argument, else is appended; names get ``-key=value`` suffixes. With
``shell:``, neither ``params:`` nor ``sweep:`` is allowed (a shell line is run as written).

``metric_patterns:`` reads metrics out of the console beyond the built-in forms (see
``app.core.console.parse``): a regex with groups ``(?P<name>…)`` and ``(?P<value>…)``
(``(?P<step>…)`` optional), a list of them, or ``series: regex`` entries (a mapping, or
one-entry mappings in the list) whose regex needs only ``(?P<value>…)``.

``secrets:`` names secrets kept in the keyring (``labdeck secrets set NAME``); their
values are put into the job's environment at launch and never appear in a file.

Every problem is reported at once, as ``file: field: problem``, in a :class:`JobFileError`;
nothing is returned from a file with any problem, and no input makes this module raise
anything else (YAML is read with ``safe_load`` only).
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from app.core.jobs.argparams import (
    ScriptArg,
    apply_params,
    convert_value,
    detect_script_args,
    param_key,
    parse_params,
)
from app.core.jobs.feasibility import HostFacts
from app.core.jobs.jobfields import FieldReader, parse_duration, parse_memory_mib
from app.core.jobs.jobspec import (
    INTERPRETERS,
    JobFileError,
    JobSpec,
    did_you_mean,
    show,
    validate,
)
from app.core.jobs.sweep import expand_grid, sweep_name

JOB_FILE_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
MAX_JOB_FILE_BYTES = 1024 * 1024
MAX_FLOW_DEPTH = 100
KEYS = (
    "name", "command", "shell", "script", "args", "interpreter", "workdir", "upload", "env",
    "secrets", "setup", "conda_env", "venv", "gpus", "min_free_mem_mib", "hosts", "host_tags",
    "pin_gpus", "priority", "tags", "params", "time_limit", "retry_on_lost", "max_retries",
    "sweep", "metric_patterns",
)
# A bad value is read as its default, so validation only repeats a reported problem for
# what runs ("nothing to run" after a bad command:): these keys silence that field.
_FIELD_KEYS = {"command": {"command", "shell", "script", "args", "interpreter"}}



def is_job_file(path: str | Path) -> bool:
    """Whether ``path`` is named like a job file (rather than a script)."""
    return Path(path).suffix.lower() in JOB_FILE_SUFFIXES


def load_job_file(
    path: str | Path,
    *,
    known_hosts: Collection[str] | None = None,
    facts: Mapping[str, HostFacts] | None = None,
) -> list[JobSpec]:
    """The specs a job file describes (several for a sweep); :class:`JobFileError` else."""
    path = Path(path)
    source = str(path)
    fmt = JOB_FILE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise JobFileError([f"{source}: job files end in .yaml, .yml or .toml"])
    try:
        size = path.stat().st_size
        if size > MAX_JOB_FILE_BYTES:
            raise JobFileError([f"{source}: {size:,} bytes is too big for a job file "
                                f"(the limit is {MAX_JOB_FILE_BYTES // 1024} KiB)"])
        data = path.read_bytes()
    except OSError as e:
        raise JobFileError([f"{source}: cannot read it: {e.strerror or e}"]) from None
    return parse_job_text(data, fmt=fmt, source=source, base_dir=path.resolve().parent,
                          known_hosts=known_hosts, facts=facts)


def parse_job_text(
    data: str | bytes,
    *,
    fmt: str,
    source: str,
    base_dir: Path,
    known_hosts: Collection[str] | None = None,
    facts: Mapping[str, HostFacts] | None = None,
) -> list[JobSpec]:
    """:func:`load_job_file` on text already read; ``fmt`` is ``"yaml"`` or ``"toml"``."""
    if isinstance(data, bytes):
        if len(data) > MAX_JOB_FILE_BYTES:
            raise JobFileError([f"{source}: too big for a job file"])
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise JobFileError([f"{source}: not UTF-8 text (a bad byte at offset {e.start})"]
                               ) from None
    else:
        text = data
    return specs_from_mapping(
        _parse(text, fmt, source), source=source, base_dir=base_dir,
        known_hosts=known_hosts, facts=facts,
    )


# libyaml's safe loader when PyYAML was built with it: ~10× faster on big files.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str, fmt: str, source: str) -> Any:
    parsed = _parse_text(text, fmt, source)
    if fmt == "yaml" and _nesting(parsed) > MAX_FLOW_DEPTH:
        # libyaml builds any depth; what uses the spec later recurses over it.
        raise JobFileError([f"{source}: nested too deeply to be a job file"])
    return parsed


def _parse_text(text: str, fmt: str, source: str) -> Any:
    if fmt == "yaml" and _bracket_depth(text) > MAX_FLOW_DEPTH:
        # PyYAML's scanner is quadratic in flow nesting ("[[[[…" takes minutes at 1 MiB);
        # no job file nests like this, so refuse before parsing.
        raise JobFileError([f"{source}: nested too deeply to be a job file"])
    if fmt == "toml" and _dotted_key_depth(text) > MAX_FLOW_DEPTH:
        # tomllib is quadratic in the parts of one dotted key (a.a.a… = 1 of 40 KB takes
        # over 20 s), so refuse before parsing, as for YAML's flow nesting.
        raise JobFileError([f"{source}: a key nested too deeply to be a job file"])
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        try:
            return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
        except (yaml.YAMLError, RecursionError):
            # Read again with the pure-Python loader for its clearer message and marks.
            return yaml.safe_load(text)
    except tomllib.TOMLDecodeError as e:
        raise JobFileError([f"{source}: TOML syntax error: {e}"]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise JobFileError([f"{source}: {where}YAML syntax error: {what}"]) from None
    except yaml.YAMLError as e:
        raise JobFileError([f"{source}: YAML error: {e}"]) from None
    except RecursionError:
        raise JobFileError([f"{source}: nested too deeply to be a job file"]) from None
    except (ValueError, TypeError, OverflowError) as e:
        # Scalars the parsers accept but cannot build (dates out of range, say).
        raise JobFileError([f"{source}: cannot read a value: {e}"]) from None


def _nesting(value: Any) -> int:
    """How deep lists and mappings nest in ``value`` (iteratively: any depth is safe)."""
    deepest, todo = 0, [(value, 1)]
    seen: set[int] = set()  # YAML aliases share objects: each is walked once
    while todo:
        item, depth = todo.pop()
        if not isinstance(item, dict | list) or id(item) in seen:
            continue
        seen.add(id(item))
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        todo.extend((child, depth + 1) for child in children)
    return deepest


def _dotted_key_depth(text: str) -> int:
    """The most dots in the key part (before an unquoted ``=``) of any TOML line, quotes
    ignored: an upper bound on a dotted key's depth."""
    deepest = 0
    for line in text.splitlines():
        dots = 0
        quote = ""
        for ch in line:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == ".":
                dots += 1
            elif ch in "=#":
                break
        deepest = max(deepest, dots)
    return deepest


def _bracket_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting, quotes ignored: an upper bound good enough to refuse
    pathological files (a real job file stays in single digits)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}" and depth:
            depth -= 1
    return deepest


def specs_from_mapping(
    data: Any,
    *,
    source: str,
    base_dir: Path,
    known_hosts: Collection[str] | None = None,
    facts: Mapping[str, HostFacts] | None = None,
) -> list[JobSpec]:
    """Specs from a parsed job file (or a dialog's equivalent mapping)."""
    if data is None or data == {}:
        raise JobFileError([f"{source}: the file is empty; it needs command:, shell: or "
                            "script: at least"])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else show(data)
        raise JobFileError([f"{source}: the top level must be a mapping of keys such as "
                            f"command: and gpus:, got {kind}"])
    r = FieldReader(source, data)
    for key in data:
        if not isinstance(key, str):
            r.problem("", f"key {show(key)} is not text")
        elif key not in KEYS:
            r.problem("", f"unknown key {show(key)}{did_you_mean(key, KEYS)}")
    base, options, user_args = _what_to_run(r, base_dir)
    params = r.params("params")
    grid = r.sweep("sweep", params)
    if base.get("shell") is not None and (params or grid):
        r.problem("params" if params else "sweep",
                  "not allowed with shell: (a shell line is run as written); "
                  "use command: or script: instead")
    # With shell: there is no argv to add params to (and params were refused above).
    argv, conflicts = apply_params(base.get("argv", ()), params if "argv" in base else {},
                                   replace=False, options=options)
    for conflict in conflicts:
        r.problem("params", f"{conflict} is also in the arguments with another value")
    if r.problems:
        # Also say what else is wrong, but not twice for a field already reported.
        spec = JobSpec(**{**base, "argv": tuple(argv), "params": params})
        for problem in validate(spec, known_hosts, facts):
            field = problem.partition(":")[0]
            if not r.reported & _FIELD_KEYS.get(field, set()):
                r.problems.append(f"{source}: {problem}")
        raise JobFileError(r.problems)
    auto = parse_params(user_args, options)
    # The reader has checked the grid's size already.
    combos = expand_grid(grid) if grid else [{}]
    specs: list[JobSpec] = []
    seen: set[str] = set()
    for combo in combos:
        combo_argv, _ = apply_params(argv, combo, replace=True, options=options)
        merged = {k: v for k, v in auto.items()
                  if param_key(k) not in {param_key(x) for x in (*params, *combo)}}
        typed = {k: convert_value(v) if isinstance(v, str) else v
                 for k, v in {**params, **combo}.items()}
        fields = {**base, "argv": tuple(combo_argv), "params": {**merged, **typed}}
        if grid:
            fields["name"] = sweep_name(base["name"], combo)
        spec = JobSpec(**fields)
        for problem in validate(spec, known_hosts, facts):
            line = f"{source}: {problem}"
            if line not in seen:
                seen.add(line)
                r.problems.append(line)
        specs.append(spec)
    if r.problems:
        raise JobFileError(r.problems)
    return specs


def _what_to_run(r: FieldReader, base_dir: Path
                 ) -> tuple[dict[str, Any], list[ScriptArg], list[str]]:
    """Spec fields except params, the script's declared options, and the user's own
    arguments."""
    d = r.data
    fields: dict[str, Any] = {
        "name": r.text("name", default=Path(r.source).stem or "job", numbers=True),
        "workdir": r.text("workdir"),
        "env": r.env("env"),
        "secrets": tuple(r.text_list("secrets")),
        "setup": tuple(r.text_list("setup")),
        "conda_env": r.text("conda_env"),
        "venv": r.text("venv"),
        "min_free_mem_mib": r.convert("min_free_mem_mib", parse_memory_mib,
                                      'a memory size like 8192 (MiB) or "8GiB"'),
        "hosts": tuple(r.text_list("hosts")),
        "host_tags": tuple(r.text_list("host_tags")),
        "pin_gpus": tuple(r.whole_list("pin_gpus")),
        "priority": r.whole("priority", 0, "a whole number"),
        "tags": tuple(r.text_list("tags")),
        "time_limit_s": r.convert("time_limit", parse_duration,
                                  'a duration like "2h30m", "90m" or a number of seconds'),
        "retry_on_lost": r.boolean("retry_on_lost", True),
        "max_retries": r.whole("max_retries", 3, "a whole number ≥ 0", minimum=0),
        "metric_patterns": tuple(r.metric_patterns("metric_patterns")),
    }
    fields["gpus"] = r.whole("gpus", len(fields["pin_gpus"]) or 1, "a whole number ≥ 0",
                             minimum=0)
    kinds = [k for k in ("command", "shell", "script") if k in d]
    if len(kinds) > 1:
        r.problem(kinds[1], f"give one of command:, shell: or script:, not {' and '.join(kinds)}")
    for key in ("args", "interpreter"):
        if key in d and "script" not in d:
            r.problem(key, "only goes with script: (put it in command: instead)")
    upload = d.get("upload")
    if upload is not None and not (upload is False or (
            isinstance(upload, str) and upload and "\0" not in upload)):
        r.problem("upload", f"must be a path (like .) or false, got {show(upload)}")
        upload = None
    if isinstance(upload, str):
        fields["upload"] = str((base_dir / Path(upload).expanduser()).resolve())
    user_args: list[str] = []
    options: list[ScriptArg] = []
    if "shell" in d:
        fields["shell"] = r.text("shell")
        try:
            user_args = shlex.split(fields["shell"] or "")
        except ValueError:
            user_args = []
    elif "command" in d:
        fields["argv"] = tuple(r.words("command"))
        user_args = list(fields["argv"][1:])
    elif "script" in d:
        user_args = r.words("args")
        fields["argv"], options = _script_argv(r, base_dir, upload, fields)
        fields["argv"] = (*fields["argv"], *user_args)
    return fields, options, user_args


def _script_argv(
    r: FieldReader, base_dir: Path, upload: Any, fields: dict[str, Any]
) -> tuple[tuple[str, ...], list[ScriptArg]]:
    script = r.text("script")
    if script is None:
        return (), []
    interpreter = tuple(r.words("interpreter")) if "interpreter" in r.data else None
    if interpreter is None:
        interpreter = INTERPRETERS.get(Path(script).suffix.lower())
        if interpreter is None:
            r.problem("script", f"cannot tell how to run {show(script)}; add interpreter: "
                      "(for example interpreter: ruby)")
            return (), []
    if upload is False:
        return (*interpreter, script), []
    local = (base_dir / Path(script).expanduser()).resolve()
    if not local.is_file():
        r.problem("script", f"{script} not found (looked in {local.parent})")
        return (), []
    options = detect_script_args(local) if local.suffix == ".py" else []
    if upload is None:
        fields["upload"] = str(local)
        return (*interpreter, local.name), options
    root = Path(fields["upload"])
    if root.is_file() and root == local:
        return (*interpreter, local.name), options
    if root.is_dir() and local.is_relative_to(root):
        return (*interpreter, local.relative_to(root).as_posix()), options
    if not root.exists():  # validation says so; the script's place cannot be known
        return (*interpreter, script), options
    r.problem("script", f"{script} is not inside upload: {upload}")
    return (), []
