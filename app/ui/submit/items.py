"""What was dropped (or cloned), read into the submit dialog's items: one per file.

Plain Python, run on a worker thread (it parses scripts and job files and lists folders).
A script or folder becomes an editable base spec plus the options its argparse calls
declare; a job file becomes its runs, or the problems that keep it from being queued; a
spec being cloned comes back with its parameters taken out of the command, so the dialog
can show them in its table. The store's hosts and their GPU counts are read here too.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.jobs.argparams import ScriptArg, apply_params, detect_script_args, format_value
from app.core.jobs.feasibility import HostFacts, host_facts
from app.core.jobs.jobfile import JOB_FILE_SUFFIXES, load_job_file
from app.core.jobs.jobspec import INTERPRETERS, JobFileError, JobSpec, spec_from_script
from app.core.jobs.snapshot import SKIP_DIRS
from app.core.store import Store

ACCEPTED = "Labdeck queues .py and .sh scripts, folders and .yaml/.yml/.toml job files"
MAX_ENTRIES = 200


def drop_kind(path: Path) -> str | None:
    """``"folder"``, ``"script"``, ``"jobfile"``, or None for what Labdeck cannot queue."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in INTERPRETERS:
        return "script"
    if suffix in JOB_FILE_SUFFIXES:
        return "jobfile"
    return None


@dataclass(slots=True)
class SubmitItem:
    """One dropped thing: an editable base spec (script, folder, clone) or a job file's runs."""

    kind: str  # "script", "folder", "jobfile" or "spec"
    label: str
    path: Path | None = None
    base: JobSpec | None = None
    runs: list[JobSpec] = field(default_factory=list)
    args: list[ScriptArg] = field(default_factory=list)
    # Parameter values to start the table with (a clone's own; else the script defaults).
    values: dict[str, Any] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)  # folder: scripts it could run
    entry: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def editable(self) -> bool:
        return self.base is not None and self.kind != "jobfile"


def default_values(args: Sequence[ScriptArg]) -> dict[str, Any]:
    """The options' defaults as table values; non-literal defaults are left out."""
    out: dict[str, Any] = {}
    for arg in args:
        if isinstance(arg.default, bool | int | float | str) and arg.default != "":
            out[arg.name] = arg.default
    return out


def script_item(path: Path) -> SubmitItem:
    try:
        base = spec_from_script(path)
    except JobFileError as e:
        return SubmitItem("script", path.name, path, problems=e.problems)
    args = detect_script_args(path) if path.suffix.lower() == ".py" else []
    return SubmitItem("script", path.name, path, base=base, args=args,
                      values=default_values(args))


def folder_entries(folder: Path) -> list[str]:
    """Scripts in ``folder`` and its direct subfolders, relative POSIX paths, the likely
    entry point first: ``train*.py``, then ``main.py``, then the rest by depth and name."""
    found: list[str] = []
    try:
        top = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    subdirs: list[os.DirEntry[str]] = []
    for entry in top:
        if _is_script(entry):
            found.append(entry.name)
        elif entry.is_dir(follow_symlinks=False) and entry.name not in SKIP_DIRS \
                and not entry.name.startswith("."):
            subdirs.append(entry)
    for sub in subdirs:
        try:
            inner = sorted(os.scandir(sub.path), key=lambda e: e.name)
        except OSError:
            continue
        found.extend(f"{sub.name}/{e.name}" for e in inner if _is_script(e))
        if len(found) >= MAX_ENTRIES:
            break

    def rank(rel: str) -> tuple[int, int, str]:
        name = rel.rsplit("/", 1)[-1].lower()
        preferred = 0 if name.startswith("train") and name.endswith(".py") else \
            1 if name == "main.py" else 2
        return (preferred, rel.count("/"), rel)

    return sorted(found, key=rank)[:MAX_ENTRIES]


def _is_script(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file() and Path(entry.name).suffix.lower() in INTERPRETERS
    except OSError:
        return False


def folder_item(folder: Path, entry: str | None = None) -> SubmitItem:
    """The folder uploaded whole, running ``entry`` (default: the likeliest script)."""
    folder = folder.expanduser().resolve()
    entries = folder_entries(folder)
    label = folder.name + "/"
    if not entries:
        return SubmitItem("folder", label, folder, problems=[
            f"upload: {folder} holds no .py or .sh script (looked one folder deep)"])
    entry = entry if entry in entries else entries[0]
    script = folder / entry
    interpreter = INTERPRETERS[Path(entry).suffix.lower()]
    base = JobSpec(name=folder.name or Path(entry).stem, argv=(*interpreter, entry),
                   upload=str(folder))
    args = detect_script_args(script) if entry.endswith(".py") else []
    return SubmitItem("folder", label, folder, base=base, args=args,
                      values=default_values(args), entries=entries, entry=entry)


def jobfile_item(path: Path, hosts: Collection[str],
                 facts: Mapping[str, HostFacts]) -> SubmitItem:
    try:
        runs = load_job_file(path, known_hosts=hosts, facts=facts)
    except JobFileError as e:
        return SubmitItem("jobfile", path.name, path, problems=e.problems)
    names = [name for run in runs for name in run.secrets]
    if names:
        from app.core.jobs.secrets import submit_problems  # keyring: only when secrets are named

        problems = [f"{path.name}: {p}" for p in submit_problems(names)]
        if problems:
            return SubmitItem("jobfile", path.name, path, problems=problems)
    return SubmitItem("jobfile", path.name, path, base=runs[0], runs=runs)


def spec_item(data: Mapping[str, Any]) -> SubmitItem:
    """A run's spec to clone and edit: its parameters move from the command to the table."""
    try:
        spec = JobSpec.from_dict(dict(data))
    except JobFileError as e:
        return SubmitItem("spec", "the run to clone", problems=e.problems)
    args: list[ScriptArg] = []
    if spec.upload and spec.argv:
        script = _script_of(spec)
        if script is not None and script.suffix == ".py":
            args = detect_script_args(script)
    values = {k: v for k, v in spec.params.items() if v is not None}
    argv = spec.argv
    if argv and values:
        # Writing None removes every spelling of the option (app.core.jobs.argparams rules).
        argv = tuple(apply_params(argv, dict.fromkeys(values), replace=True)[0])
    base = JobSpec.from_dict({**spec.to_dict(), "argv": list(argv), "params": {}})
    return SubmitItem("spec", spec.name, None, base=base, args=args, values=values)


def _script_of(spec: JobSpec) -> Path | None:
    upload = Path(spec.upload or "")
    if upload.is_file():
        return upload
    for word in spec.argv[1:3]:
        candidate = upload / word
        if candidate.is_file():
            return candidate
    return None


def load_items(paths: Sequence[Path], spec: Mapping[str, Any] | None, hosts: Collection[str],
               facts: Mapping[str, HostFacts]) -> list[SubmitItem]:
    """One item per path (job files read against ``hosts``), or the clone of ``spec``."""
    items: list[SubmitItem] = []
    if spec is not None:
        items.append(spec_item(spec))
    for path in paths:
        kind = drop_kind(path)
        if kind == "folder":
            items.append(folder_item(path))
        elif kind == "script":
            items.append(script_item(path))
        elif kind == "jobfile":
            items.append(jobfile_item(path, hosts, facts))
        else:
            items.append(SubmitItem("none", path.name, path, problems=[
                f"{path.name}: {ACCEPTED}; this is none of these"]))
    return items


def value_text(value: Any) -> str:
    """A parameter value as the table shows it (text with a comma is quoted, so it does not
    read back as a sweep)."""
    text = format_value(value)
    return f'"{text}"' if isinstance(value, str) and "," in text else text


def known_hosts(store: Store, monitor: Any) -> tuple[list[str], dict[str, HostFacts]]:
    """Host names in the store, and what is known of each (GPUs seen live or last time,
    tags, this user's lab quota) for the submit checks; reads the store, so call it on
    a worker."""
    live = {}
    for view in monitor.hosts() if monitor is not None else ():
        if view.sample is not None:
            live[view.name] = len(view.sample.gpus)
        elif view.hello is not None:
            live[view.name] = len(view.hello.gpus)
    facts = host_facts(store, live)
    return list(facts), facts
