"""SQL for the runs table: the filtered, sorted id list, rows by id, change polling, and
the few annotations the table writes (note, tags, archived). Qt-free.

The table never loads every row. A query returns the matching run ids in display order
(one indexed or sorted pass, ~20 bytes a run), and rows are read by id, one block at a
time, for what is on screen. ORDER BY comes only from ``SORTS`` (fixed SQL fragments);
metric names and parameter keys are bound parameters, never pasted into SQL.

Every function blocks on the store's lock and disk: call them on a worker thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.metricstore import MetricStore
from app.core.runs import FINISHED, RunState
from app.core.runstore import RunStore
from app.core.store import Store

# (key, header) of the fixed columns, in display order; metric and parameter columns
# chosen by the user go between "duration" and "tags".
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Name"), ("state", "State"), ("place", "Host:GPUs"), ("user", "User"),
    ("submitted", "Submitted"), ("started", "Started"), ("duration", "Duration"),
    ("reason", "Why"), ("tags", "Tags"), ("note", "Note"),
)
STATE_ORDER = tuple(RunState)
_STATE_RANK = "CASE state " + " ".join(
    f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(STATE_ORDER)) + " END"
# The metric store keys a run's curves by its id on the host (``attempt_run_id``).
HOST_KEY_SQL = ("(CASE WHEN runs.attempt > 0 THEN runs.id || '-a' || runs.attempt "
                "ELSE runs.id END)")
# Sort keys, each one or more SQL expressions over a runs row. State sorts queued runs in
# queue order (priority, then FIFO position) so "move up/down" shows where it acts.
SORTS: dict[str, tuple[str, ...]] = {
    "name": ("name COLLATE NOCASE",),
    "state": (_STATE_RANK, "CASE WHEN state = 'queued' THEN -priority END",
              "CASE WHEN state = 'queued' THEN seq END"),
    "place": ("host", "gpus"),
    "user": ("user",),
    "submitted": ("id",),
    "started": ("started_at",),
    "duration": ("(COALESCE(ended_at, :now) - started_at)",),
    "reason": ("reason",),
    "tags": ("tags",),
    "note": ("note",),
    "metric": (f"(SELECT last_value FROM metric_series WHERE run_id = {HOST_KEY_SQL} "  # noqa: S608
               "AND metric_series.name = :sort_arg)",),
    "param": ("json_extract(params, :sort_arg)",),
}
_ROW_COLUMNS = ("id, name, state, user, host, gpus, created_at, queued_at, started_at, "
                "ended_at, attempt, tags, params, note, archived, reason, exit_code, "
                "priority, cancel_requested, updated_at, spec")
_CHUNK = 500  # ids per IN (...) list: under SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class SortKey:
    kind: str = "submitted"  # a key of SORTS
    arg: str = ""  # the metric name or parameter key for "metric" / "param"


@dataclass(frozen=True, slots=True)
class RunsQuery:
    """What the table shows: free text (with ``state:`` ``host:`` ``tag:`` ``user:``
    tokens), the filter bar's choices, and the sort."""

    text: str = ""
    states: frozenset[str] = frozenset()
    host: str = ""
    tag: str = ""
    show_archived: bool = False
    sort: SortKey = SortKey()
    descending: bool = True


@dataclass(slots=True)
class RunRow:
    """One run as the table shows it (plus what its actions need)."""

    id: str
    name: str
    state: RunState
    user: str
    host: str | None
    gpus: tuple[int, ...]
    created_at: float
    queued_at: float | None
    started_at: float | None
    ended_at: float | None
    attempt: int
    tags: tuple[str, ...]
    params: dict[str, Any]
    note: str
    archived: bool
    reason: str
    exit_code: int | None
    priority: int
    cancel_requested: bool
    updated_at: float
    spec: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def host_key(self) -> str:
        return self.id if self.attempt <= 0 else f"{self.id}-a{self.attempt}"


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where_clause(query: RunsQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE of ``query`` (with its named parameters)."""
    parts: list[str] = []
    args: dict[str, Any] = {}
    states = set(query.states)
    hosts = [query.host] if query.host else []
    tags = [query.tag] if query.tag else []
    users: list[str] = []
    for n, word in enumerate(query.text.split()):
        key, sep, value = word.partition(":")
        key = key.lower()
        if sep and value and key in ("state", "host", "tag", "user"):
            if key == "state":  # narrows the filter bar's states, never widens them
                states = (states & {value.lower()}) if states else {value.lower()}
            else:
                {"host": hosts, "tag": tags, "user": users}[key].append(value)
            continue
        args[f"t{n}"] = _like(word)
        parts.append("(" + " OR ".join(
            f"{col} LIKE :t{n} ESCAPE '\\'" for col in
            ("name", "id", "user", "COALESCE(host, '')", "tags", "note")) + ")")
    if not query.show_archived:
        parts.append("archived = 0")
    if states or query.states:  # chosen states that exclude each other match nothing
        marks = []
        for i, state in enumerate(sorted(states)):
            args[f"s{i}"] = state
            marks.append(f":s{i}")
        parts.append(f"state IN ({', '.join(marks)})" if marks else "0")
    for i, host in enumerate(hosts):
        args[f"h{i}"] = host
        parts.append(f"host = :h{i}")
    for i, user in enumerate(users):
        args[f"u{i}"] = user
        parts.append(f"user = :u{i}")
    for i, tag in enumerate(tags):
        args[f"g{i}"] = tag
        parts.append(
            f"EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = :g{i})")  # noqa: S608
    return ("WHERE " + " AND ".join(parts)) if parts else "", args


def ids_sql(query: RunsQuery, now: float | None = None) -> tuple[str, dict[str, Any]]:
    """``SELECT id FROM runs …`` in display order; NULL sort values always come last."""
    where, args = where_clause(query)
    sort = query.sort if query.sort.kind in SORTS else SortKey()
    direction = "DESC" if query.descending else "ASC"
    if sort.kind == "submitted":
        return f"SELECT id FROM runs {where} ORDER BY id {direction}", args  # noqa: S608
    exprs = SORTS[sort.kind]
    if sort.kind == "metric":
        args["sort_arg"] = sort.arg
    elif sort.kind == "param":
        args["sort_arg"] = "$." + json.dumps(sort.arg)
    if any(":now" in e for e in exprs):
        args["now"] = time.time() if now is None else now
    # Keys are computed once per row in a subquery, not once per comparison.
    keys = ", ".join(f"{e} AS k{i}" for i, e in enumerate(exprs))
    order = ", ".join(f"k{i} IS NULL, k{i} {direction}" for i in range(len(exprs)))
    return (f"SELECT id FROM (SELECT id, {keys} FROM runs {where}) "  # noqa: S608
            f"ORDER BY {order}, id DESC"), args


def fetch_ids(store: Store, query: RunsQuery, limit: int | None = None) -> list[str]:
    sql, args = ids_sql(query)
    if limit is not None:
        sql, args = sql + " LIMIT :limit", {**args, "limit": int(limit)}
    with store.lock:
        return [row[0] for row in store.db.conn.execute(sql, args)]


def _row(r: Sequence[Any]) -> RunRow:
    (run_id, name, state, user, host, gpus, created_at, queued_at, started_at, ended_at,
     attempt, tags, params, note, archived, reason, exit_code, priority, cancel, updated,
     spec) = r
    return RunRow(
        id=run_id, name=name, state=RunState(state), user=user, host=host,
        gpus=tuple(json.loads(gpus)) if gpus != "[]" else (), created_at=created_at,
        queued_at=queued_at, started_at=started_at, ended_at=ended_at, attempt=attempt,
        tags=tuple(json.loads(tags)) if tags != "[]" else (),
        params=json.loads(params) if params != "{}" else {}, note=note or "",
        archived=bool(archived), reason=reason or "", exit_code=exit_code,
        priority=priority, cancel_requested=bool(cancel), updated_at=updated or 0.0,
        spec=json.loads(spec),
    )


def fetch_rows(store: Store, metricstore: MetricStore, ids: Iterable[str]) -> dict[str, RunRow]:
    """Rows of ``ids`` that still exist, with the last value of every metric series."""
    wanted = list(dict.fromkeys(ids))
    rows: dict[str, RunRow] = {}
    with store.lock:
        conn = store.db.conn
        for k in range(0, len(wanted), _CHUNK):
            part = wanted[k:k + _CHUNK]
            sql = (f"SELECT {_ROW_COLUMNS} FROM runs "  # noqa: S608 - fixed columns
                   f"WHERE id IN ({','.join('?' * len(part))})")
            for r in conn.execute(sql, part):
                rows[r[0]] = _row(r)
    by_key = {row.host_key: row for row in rows.values()}
    for key, values in metricstore.last_values(list(by_key)).items():
        by_key[key].metrics = values
    return rows


def metric_values(metricstore: MetricStore, rows: Iterable[RunRow]) -> dict[str, dict[str, float]]:
    """run id → {series: last value} for the given cached rows."""
    by_key = {row.host_key: row.id for row in rows}
    return {by_key[key]: values for key, values in metricstore.last_values(list(by_key)).items()}


@dataclass(frozen=True, slots=True)
class ChangeToken:
    """Cheap to read (an index end, a count, a pragma); differs after any run is added,
    changed or deleted, by this process (``updated_at``, count) or another one
    (``data_version`` moves with every commit made through another connection)."""

    last_update: float
    count: int
    data_version: int = 0


# A writer stamps updated_at before it may wait for the write lock: re-read that far back,
# so a write committed late with an older stamp is not missed.
LATE_COMMIT_S = 30.0


def change_token(store: Store) -> ChangeToken:
    with store.lock:
        conn = store.db.conn
        row = conn.execute("SELECT COALESCE(MAX(updated_at), 0), COUNT(*) FROM runs").fetchone()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
    return ChangeToken(float(row[0]), int(row[1]), int(version))


def changed_since(store: Store, since: float) -> list[str]:
    """Runs written at or after ``since - LATE_COMMIT_S`` (a few rows too many is cheap)."""
    with store.lock:
        return [r[0] for r in store.db.conn.execute(
            "SELECT id FROM runs WHERE updated_at >= ?", [since - LATE_COMMIT_S])]


# -- what the filter bar and the header menu offer -----------------------------------------
RECENT = 5000  # choices are read from the newest runs: cheap at any store size


def filter_choices(store: Store) -> tuple[list[str], list[str]]:
    """(hosts, tags) seen on recent runs, sorted."""
    with store.lock:
        conn = store.db.conn
        hosts = [r[0] for r in conn.execute(
            "SELECT DISTINCT host FROM (SELECT host FROM runs ORDER BY id DESC LIMIT ?) "
            "WHERE host IS NOT NULL ORDER BY host", [RECENT])]
        tags = [r[0] for r in conn.execute(
            "SELECT DISTINCT j.value FROM (SELECT tags FROM runs ORDER BY id DESC LIMIT ?) "
            "AS r, json_each(r.tags) AS j ORDER BY j.value", [RECENT])]
    return hosts, tags


def column_choices(store: Store) -> tuple[list[str], list[str]]:
    """(metric names, parameter keys) of recent runs, for the header's column menu."""
    with store.lock:
        conn = store.db.conn
        metrics = [r[0] for r in conn.execute(
            "SELECT DISTINCT name FROM (SELECT name FROM metric_series ORDER BY id DESC "
            "LIMIT ?) ORDER BY name", [RECENT * 4])]
        params = [r[0] for r in conn.execute(
            "SELECT DISTINCT j.key FROM (SELECT params FROM runs ORDER BY id DESC LIMIT ?) "
            "AS r, json_each(r.params) AS j ORDER BY j.key", [RECENT])]
    return metrics, params


# -- annotations and delete ---------------------------------------------------------------
def read_annotations(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """run id → {"tags", "note", "archived"} as stored now (what an undo puts back)."""
    out: dict[str, dict[str, Any]] = {}
    with store.lock:
        for k in range(0, len(run_ids), _CHUNK):
            part = list(run_ids[k:k + _CHUNK])
            for run_id, tags, note, archived in store.db.conn.execute(
                    f"SELECT id, tags, note, archived FROM runs "  # noqa: S608
                    f"WHERE id IN ({','.join('?' * len(part))})", part):
                out[run_id] = {"tags": json.loads(tags), "note": note,
                               "archived": bool(archived)}
    return out


def set_note(store: Store, run_id: str, note: str) -> None:
    with store.transaction() as db:
        db.conn.execute("UPDATE runs SET note = ?, updated_at = ? WHERE id = ?",
                        [note, time.time(), run_id])


def set_tags(store: Store, run_id: str, tags: Sequence[str]) -> None:
    clean = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    with store.transaction() as db:
        db.conn.execute("UPDATE runs SET tags = ?, updated_at = ? WHERE id = ?",
                        [json.dumps(clean), time.time(), run_id])


def set_archived(store: Store, run_ids: Iterable[str], archived: bool) -> None:
    now = time.time()
    with store.transaction() as db:
        db.conn.executemany("UPDATE runs SET archived = ?, updated_at = ? WHERE id = ?",
                            [(int(archived), now, run_id) for run_id in run_ids])


def delete_finished(store: Store, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Delete the finished runs among ``run_ids`` (others are left alone); returns their
    rows exactly as stored, for ``restore_rows`` (undo). Curves and console stay."""
    runstore = RunStore(store)
    finished = tuple(s.value for s in FINISHED)
    taken: list[dict[str, Any]] = []
    with store.transaction() as db:
        conn = db.conn
        for run_id in run_ids:
            cursor = conn.execute("SELECT * FROM runs WHERE id = ?", [run_id])
            names = [d[0] for d in cursor.description]
            row = cursor.fetchone()
            if row is None or row[names.index("state")] not in finished:
                continue
            taken.append(dict(zip(names, row, strict=True)))
            runstore.delete(run_id)
    return taken


def restore_rows(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Put deleted rows back as they were (their ids cannot have been reused)."""
    now = time.time()
    with store.transaction() as db:
        for row in rows:
            values = dict(row, updated_at=now)  # a change the table's poll must see
            columns = list(values)
            db.conn.execute(
                f"INSERT OR IGNORE INTO runs ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(columns))})", [values[c] for c in columns])
