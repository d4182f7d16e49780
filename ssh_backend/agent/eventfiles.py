"""TensorBoard event files a job writes where its library puts them, found in the job's
working folder: ``SummaryWriter()`` → ``runs/<date>_<host>/``, Lightning →
``lightning_logs/version_N/``, Hugging Face → ``runs/`` or ``output_dir/runs/``, Keras →
``logs/train`` and ``logs/validation``, CatBoost → ``learn/events.out.tfevents``.

Stdlib only, Python >= 3.8. The search is bounded (depth, folders looked at, files
found) and skips what is never a log folder (hidden folders, virtual environments,
caches). A working folder inside the run's own folder (the uploaded code, the default)
is the run's alone: every event file in it is the run's. A shared one (a ``workdir`` in
the home folder) is not: there a file counts only if it was written since the job
started by a process of the job's session — one that holds it open, or whose pid the
file's name carries (TensorFlow and torch write it there) — checked while that process
lives; a file claimed once stays the run's.
"""

import os
import re

import hostinfo

EVENTS_NAME = "events.out.tfevents"
MAX_DEPTH = 5
MAX_DIRS = 2000
MAX_FILES = 200
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", ".venv",
                       "env", "wandb", "mlruns", "checkpoints"})
# Folders that name a split of one run (TensorBoard shows them as runs of their own):
# their series are kept apart as ``train/loss`` and ``validation/loss``.
SPLIT_FOLDERS = frozenset({"train", "training", "validation", "valid", "val", "eval",
                           "evaluation", "test", "learn", "dev"})
# events.out.tfevents.<seconds>.<host>.<pid>.<n>[.suffix]: the writer's pid.
_PID_RE = re.compile(r"^events\.out\.tfevents\.\d+\.(?:.+)\.(\d+)\.\d+(?:\..*)?$")


def is_event_file(name):
    return name == EVENTS_NAME or name.startswith(EVENTS_NAME + ".")


def series_prefix(rel_path):
    """``logs/validation/events…`` → ``validation/``; ``runs/Dec07_host/events…`` → ``''``."""
    folder = os.path.basename(os.path.dirname(rel_path))
    return folder + "/" if folder.lower() in SPLIT_FOLDERS else ""


def writer_pid(name):
    m = _PID_RE.match(name)
    return int(m.group(1)) if m else None


def _walk(top):
    """(folder relative to ``top``, file names) of the folders worth a look, bounded."""
    stack = [("", 0)]
    seen = 0
    while stack and seen < MAX_DIRS:
        rel, depth = stack.pop()
        seen += 1
        try:
            entries = sorted(os.scandir(os.path.join(top, rel) if rel else top),
                             key=lambda e: e.name)
        except OSError:
            continue
        files, subdirs = [], []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_DEPTH and not entry.name.startswith(".") \
                            and entry.name not in SKIP_DIRS:
                        subdirs.append(entry.name)
                elif entry.is_file(follow_symlinks=False):
                    files.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
            except OSError:
                continue
        yield rel, files
        for name in reversed(subdirs):
            stack.append((rel + "/" + name if rel else name, depth + 1))


def find(top, owned, job=None, claimed=()):
    """Relative paths of the run's event files under ``top``.

    ``owned``: the folder is the run's own. Otherwise ``job`` (``{"sid", "since"}``: the
    job's session id and start time) decides, see the module docstring; ``claimed`` are
    paths already found, kept whatever their writer does now."""
    found = []
    held = None  # files the job's processes hold open, looked up once if needed
    for rel, files in _walk(top):
        for name, mtime in files:
            if not is_event_file(name):
                continue
            path = rel + "/" + name if rel else name
            if not (owned or path in claimed) and _recent(mtime, job) and held is None:
                held = hostinfo.open_files(job["sid"])
            if owned or path in claimed or (_recent(mtime, job) and (
                    os.path.realpath(os.path.join(top, path)) in held
                    or _pid_in_session(name, job["sid"]))):
                found.append(path)
                if len(found) >= MAX_FILES:
                    return found
    return found


def _recent(mtime, job):
    """Written since the job started (a job is known for a shared folder only)."""
    return bool(job) and job.get("sid") is not None and mtime >= job.get("since", 0) - 1


def _pid_in_session(name, sid):
    pid = writer_pid(name)
    return pid is not None and hostinfo.session_of(pid) == sid
