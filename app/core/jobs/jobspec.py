"""What a run is: the job spec, its checks, and what it becomes on a host.

A :class:`JobSpec` is plain data. The store keeps :meth:`JobSpec.to_dict` as ``Run.spec``;
:func:`host_job` turns a spec into the ``job.json`` the wrapper on the host reads. The
program and its arguments always travel as data (an argv list, never a shell line), and
the only shell text Labdeck writes itself (conda/venv activation) quotes every value with
``shlex.quote``, so no value can turn into a command. :func:`validate` returns one
user-facing sentence per problem, ``"field: what is wrong"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.console.parse import pattern_problems
from app.core.hosts.registry import validate_host_name
from app.core.jobs.argparams import apply_params, detect_script_args, parse_params
from app.core.jobs.feasibility import HostFacts, impossible
from app.core.jobs.snapshot import SnapshotError, read_snapshot
from ssh_backend.runs import RUN_ID_RE

__all__ = ["JobFileError", "JobSpec", "SnapshotError", "host_job", "snapshot_files",
           "spec_from_script", "validate"]

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PARAM_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# Set by the wrapper for every run (contract with the wrapper): a spec may not set them.
RESERVED_ENV = frozenset(
    {"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "LABDECK_RUN_DIR", "LABDECK_RUN_ID",
     "LABDECK_SIM_GPUS", "LABDECK_SIM_HOST"}
)
MAX_NAME_LEN = 200
MAX_GPUS = 1024
MAX_PRIORITY = 1_000_000
MAX_RETRIES = 100
INTERPRETERS = {".py": ("python3",), ".sh": ("bash",), ".bash": ("bash",)}


class JobFileError(ValueError):
    """A job description that cannot be used; ``problems`` has one sentence each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One run as the user described it (see the module docstring)."""

    name: str
    # Program and arguments, passed to exec as they are: never parsed by a shell.
    argv: tuple[str, ...] = ()
    # Instead of argv: a shell line the user wrote, run by bash as written.
    shell: str | None = None
    # On the host ("~/" allowed; relative = under $HOME); None → the snapshot, else $HOME.
    workdir: str | None = None
    # Local file or folder copied into the run's code/ folder at launch.
    upload: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Names of secrets (app.core.jobs.secrets): values come from the keyring at each launch and
    # reach only the job's environment; a spec never holds a value.
    secrets: tuple[str, ...] = ()
    # Shell lines run before the command (after the conda/venv activation).
    setup: tuple[str, ...] = ()
    conda_env: str | None = None
    venv: str | None = None
    gpus: int = 1
    min_free_mem_mib: float | None = None
    hosts: tuple[str, ...] = ()
    host_tags: tuple[str, ...] = ()
    pin_gpus: tuple[int, ...] = ()
    priority: int = 0
    tags: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    time_limit_s: float | None = None
    retry_on_lost: bool = True
    max_retries: int = 3
    # Regexes that read metrics out of the console (app.core.console.parse): each has a
    # group (?P<value>…) and either (?P<name>…) or a leading (?#series=NAME) comment.
    metric_patterns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: keys are the field names, tuples become lists."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        """The inverse of :meth:`to_dict`. Keys this version does not know are ignored
        (a newer Labdeck may have written them); wrong types raise :class:`JobFileError`."""
        if not isinstance(data, dict):
            raise JobFileError([f"spec: must be a mapping, got {show(data)}"])
        problems: list[str] = []
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                value = _coerce(f.name, data[f.name], problems)
                if value is not _BAD:
                    kwargs[f.name] = value
        if "name" not in data:
            problems.append("name: missing")
        if problems:
            raise JobFileError(problems)
        return cls(**kwargs)


_BAD = object()
_STR_TUPLES = {"argv", "setup", "hosts", "host_tags", "tags", "metric_patterns", "secrets"}
_OPT_STRS = {"shell", "workdir", "upload", "conda_env", "venv"}
_OPT_NUMS = {"min_free_mem_mib", "time_limit_s"}
_INTS = {"gpus", "priority", "max_retries"}


def _coerce(name: str, value: Any, problems: list[str]) -> Any:
    def bad(kind: str) -> object:
        problems.append(f"{name}: must be {kind}, got {show(value)}")
        return _BAD

    if name in _STR_TUPLES:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        return tuple(value) if ok else bad("a list of text")
    if name == "pin_gpus":
        ok = isinstance(value, list | tuple) and all(_is_int(v) for v in value)
        return tuple(value) if ok else bad("a list of whole numbers")
    if name in _OPT_STRS:
        return value if value is None or isinstance(value, str) else bad("text or null")
    if name in _OPT_NUMS:
        ok = value is None or _is_number(value)
        return (None if value is None else float(value)) if ok else bad("a number or null")
    if name in _INTS:
        return value if _is_int(value) else bad("a whole number")
    if name == "retry_on_lost":
        return value if isinstance(value, bool) else bad("true or false")
    if name == "name":
        return value if isinstance(value, str) else bad("text")
    if name == "env":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
        return dict(value) if ok else bad("a mapping of text to text")
    ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)  # params
    return dict(value) if ok else bad("a mapping")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def show(value: Any) -> str:
    """A value as quoted in a message: ``"two"``, ``3.5``, ``true``, ``a list``; short."""
    if isinstance(value, str | int | float | bool) or value is None:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except ValueError:
            text = repr(value)
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list | tuple):
        text = "a list"
    else:
        text = f"{type(value).__name__} {str(value)[:40]!r}"
    return text if len(text) <= 80 else text[:76] + "…" + text[-1]


def did_you_mean(word: str, options: Collection[str]) -> str:
    """`` (did you mean "gpus"?)`` or an empty string."""
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def validate(
    spec: JobSpec,
    known_hosts: Collection[str] | None = None,
    facts: Mapping[str, HostFacts] | None = None,
) -> list[str]:
    """Every problem with ``spec``, one sentence each as ``"field: problem"``; [] if none.

    ``known_hosts`` (the registry's names) turns unknown host names into problems;
    ``facts`` (what is known of those hosts) does the same for a run that could never
    start on them (``app.core.jobs.feasibility``).
    """
    p: list[str] = []
    _check_what_runs(p, spec)
    _check_environment(p, spec)
    _check_placement(p, spec, known_hosts, facts)
    _check_params_and_limits(p, spec)
    return p


def _check_what_runs(p: list[str], spec: JobSpec) -> None:
    _check_text(p, "name", spec.name, one_line=True)
    if len(spec.name) > MAX_NAME_LEN:
        p.append(f"name: must be at most {MAX_NAME_LEN} characters, got {len(spec.name)}")
    if spec.argv and spec.shell is not None:
        p.append("command: give a command or a shell line, not both")
    elif not spec.argv and spec.shell is None:
        p.append("command: nothing to run; give command:, shell: or script:")
    for i, arg in enumerate(spec.argv):
        if "\0" in arg:
            p.append(f"command: argument {i} contains a NUL byte, which no argument can hold")
    if spec.argv and not spec.argv[0]:
        p.append("command: the program name is empty")
    if spec.shell is not None:
        _check_text(p, "shell", spec.shell)
    if spec.workdir is not None:
        _check_text(p, "workdir", spec.workdir)
        if spec.workdir.startswith("~") and not (spec.workdir == "~" or spec.workdir[1] == "/"):
            p.append(f'workdir: only "~/" is understood, not {show(spec.workdir)}')
    if spec.upload is not None:
        if not spec.upload or "\0" in spec.upload:
            p.append(f"upload: not a usable path: {show(spec.upload)}")
        elif not Path(spec.upload).exists():
            p.append(f"upload: {spec.upload} does not exist")


def _check_environment(p: list[str], spec: JobSpec) -> None:
    for key, value in spec.env.items():
        if not ENV_NAME_RE.fullmatch(key):
            p.append(f"env: {show(key)} is not a valid variable name (letters, digits, _; "
                     "not starting with a digit)")
        elif key in RESERVED_ENV:
            p.append(f"env: {key} is set by Labdeck for every run; leave it out")
        if "\0" in value:
            p.append(f"env: {key}: the value contains a NUL byte")
    for i, key in enumerate(spec.secrets):
        if not ENV_NAME_RE.fullmatch(key):
            p.append(f"secrets: {show(key)} is not a valid variable name")
        elif key in RESERVED_ENV:
            p.append(f"secrets: {key} is set by Labdeck for every run; leave it out")
        elif key in spec.env or key in spec.secrets[:i]:
            p.append(f"secrets: {key} is {'in env' if key in spec.env else 'listed twice'};"
                     " name it once, as a secret")
    for line in spec.setup:
        _check_text(p, "setup", line)
    for fname in ("conda_env", "venv"):
        value = getattr(spec, fname)
        if value is not None:
            _check_text(p, fname, value)
    if spec.conda_env is not None and spec.venv is not None:
        p.append("venv: give conda_env or venv, not both")


def _check_placement(p: list[str], spec: JobSpec, known_hosts: Collection[str] | None,
                     facts: Mapping[str, HostFacts] | None) -> None:
    if not 0 <= spec.gpus <= MAX_GPUS:
        p.append(f"gpus: must be a whole number from 0 to {MAX_GPUS}, got {spec.gpus}")
    elif facts and (never := _never_starts(spec, facts)):
        p.append(f"gpus: impossible: this run {never}")
    if spec.min_free_mem_mib is not None and not (
        math.isfinite(spec.min_free_mem_mib) and spec.min_free_mem_mib >= 0
    ):
        p.append(f"min_free_mem_mib: must be a number ≥ 0, got {show(spec.min_free_mem_mib)}")
    _check_hosts(p, spec, known_hosts)
    for fname in ("host_tags", "tags"):
        for tag in getattr(spec, fname):
            _check_text(p, fname, tag, one_line=True)
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        p.append(f"priority: must be from -{MAX_PRIORITY:,} to {MAX_PRIORITY:,}")


def _check_params_and_limits(p: list[str], spec: JobSpec) -> None:
    for key, value in spec.params.items():
        if not PARAM_NAME_RE.fullmatch(key):
            p.append(f"params: {show(key)} is not a valid parameter name (letters, digits, "
                     "_ . -; starting with a letter)")
        if not (value is None or isinstance(value, str | bool | int | float)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            p.append(f"params: {key}: must be text, a number or true/false, got {show(value)}")
    if spec.time_limit_s is not None and not (
        math.isfinite(spec.time_limit_s) and spec.time_limit_s > 0
    ):
        p.append(f"time_limit: must be more than 0 seconds, got {show(spec.time_limit_s)}")
    if not 0 <= spec.max_retries <= MAX_RETRIES:
        p.append(f"max_retries: must be from 0 to {MAX_RETRIES}, got {spec.max_retries}")
    p.extend(f"metric_patterns: {problem}" for problem in pattern_problems(spec.metric_patterns))


def _never_starts(spec: JobSpec, facts: Mapping[str, HostFacts]) -> str | None:
    """Why ``spec`` could never start on the known hosts it may use (unknown names are
    reported as such by ``_check_hosts``)."""
    known = tuple(h for h in spec.hosts if h in facts)
    if spec.hosts and not known:
        return None
    return impossible(spec.gpus, known, spec.host_tags, facts)


def _check_text(p: list[str], fname: str, value: str, *, one_line: bool = False) -> None:
    if not value.strip():
        p.append(f"{fname}: must not be empty")
    elif "\0" in value:
        p.append(f"{fname}: contains a NUL byte: {show(value)}")
    elif one_line and not value.isprintable():
        p.append(f"{fname}: must be one line without control characters, got {show(value)}")


def _check_hosts(p: list[str], spec: JobSpec, known: Collection[str] | None) -> None:
    for host in spec.hosts:
        try:
            validate_host_name(host)
        except ValueError as e:
            p.append(f"hosts: {e}")
            continue
        if known is not None and host not in known:
            listed = ", ".join(sorted(known)) or "none yet"
            p.append(f"hosts: unknown host {show(host)}{did_you_mean(host, known)}; "
                     f"known hosts: {listed}")
    if spec.pin_gpus:
        if len(spec.hosts) != 1:
            p.append("pin_gpus: pinning GPUs needs exactly one host in hosts")
        if len(set(spec.pin_gpus)) != len(spec.pin_gpus) or min(spec.pin_gpus) < 0:
            p.append("pin_gpus: must be distinct GPU indices ≥ 0")
        if len(spec.pin_gpus) != spec.gpus:
            p.append(f"pin_gpus: names {len(spec.pin_gpus)} GPUs but gpus is {spec.gpus}")


def setup_lines(spec: JobSpec) -> list[str]:
    """The shell lines run before the command: activation first, then the user's lines."""
    lines: list[str] = []
    if spec.conda_env is not None:
        lines.append('source "$(conda info --base)/etc/profile.d/conda.sh" && '
                     f"conda activate {shlex.quote(spec.conda_env)}")
    if spec.venv is not None:
        lines.append(f"source {_host_path_word(spec.venv.rstrip('/') or '/')}/bin/activate")
    lines.extend(spec.setup)
    return lines


def _host_path_word(path: str) -> str:
    # A quoted "~/x" would not expand: keep $HOME outside the quotes, the rest inside.
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def host_workdir(workdir: str | None) -> str | None:
    """The workdir as job.json carries it: absolute, or under ``~/``."""
    if workdir is None or workdir.startswith(("/", "~/")):
        return workdir
    if workdir == "~":
        return "~/"
    return "~/" + workdir


def host_job(
    spec: JobSpec,
    run_id: str,
    gpu_indices: Sequence[int],
    gpu_uuids: Sequence[str],
    sim_host: str | None = None,
) -> dict[str, Any]:
    """The ``job.json`` for the wrapper on the host (its format is agreed with it)."""
    if not RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r} is not valid")
    if len(gpu_indices) != len(gpu_uuids):
        raise ValueError("gpu_indices and gpu_uuids must have the same length")
    return {
        "run_id": run_id,
        "argv": list(spec.argv),
        "shell": spec.shell,
        "env": dict(spec.env),
        "setup": setup_lines(spec),
        "workdir": host_workdir(spec.workdir),
        "time_limit_s": spec.time_limit_s,
        "gpu_indices": [int(i) for i in gpu_indices],
        "gpu_uuids": [str(u) for u in gpu_uuids],
        "sim_host": sim_host,
    }


def spec_from_script(
    path: str | Path, args: Sequence[str] = (), *, upload_dir: bool = False, **overrides: Any
) -> JobSpec:
    """The spec for ``labdeck submit train.py -- --lr 3e-4``.

    ``.py`` runs as ``python3 <name> ARGS``, ``.sh`` as ``bash <name> ARGS``, in the run's
    snapshot, which holds the script alone (or its whole folder with ``upload_dir``).
    ``--key value`` arguments become params; ``overrides`` set any other field (an explicit
    ``params`` is added as arguments, see :func:`app.core.jobs.argparams.apply_params`).
    Raises :class:`JobFileError` for a missing script, an unknown kind or an invalid spec.
    """
    script = Path(path).expanduser()
    if not script.is_file():
        raise JobFileError([f"{path}: no such script"])
    interpreter = INTERPRETERS.get(script.suffix.lower())
    if interpreter is None:
        raise JobFileError([f"{path}: cannot tell how to run a {script.suffix or 'suffix-less'}"
                            " file; write a job file with command: instead"])
    script = script.resolve()
    options = detect_script_args(script)
    argv = [*interpreter, script.name, *args]
    params = parse_params(list(args), options)
    explicit = overrides.pop("params", None) or {}
    argv, conflicts = apply_params(argv, explicit, replace=False, options=options)
    problems = [f"params: {c} is also in the arguments with another value" for c in conflicts]
    fields: dict[str, Any] = {
        "name": script.stem,
        "argv": tuple(argv),
        "upload": str(script.parent if upload_dir else script),
        "params": {**params, **explicit},
    }
    fields.update(overrides)
    spec = JobSpec(**fields)
    problems += validate(spec)
    if problems:
        raise JobFileError(problems)
    return spec


def snapshot_files(spec: JobSpec) -> dict[str, bytes]:
    """The snapshot of ``spec.upload`` (see :func:`app.core.jobs.snapshot.read_snapshot`);
    raises :class:`SnapshotError` when it is too big or unreadable."""
    return read_snapshot(spec.upload)
