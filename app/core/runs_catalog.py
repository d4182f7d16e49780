"""What the runs table reads: a query's run ids in display order, rows by id with their
metrics' last values, a cheap token that says whether anything changed, and the hosts,
tags, metrics and parameters its menus offer.

The table never loads every row. A query returns the matching run ids (one indexed or
sorted pass, ~20 bytes a run), and rows are read by id, one block at a time, for what is
on screen. Every method blocks on the store's lock and disk: call them on a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunRecord, RunState
from app.core.queue.runs_filter import RunsQuery, ids_sql
from app.core.store import Store

_ROW_COLUMNS = ("id, name, state, user, host, gpus, created_at, queued_at, started_at, "
                "ended_at, attempt, tags, params, note, archived, reason, exit_code, "
                "priority, cancel_requested, updated_at, spec")
CHUNK = 500  # ids per IN (...) list: under SQLite's bound-parameter limit
# A writer stamps updated_at before it may wait for the write lock: re-read that far back,
# so a write committed late with an older stamp is not missed.
LATE_COMMIT_S = 30.0
RECENT = 5000  # menu choices are read from the newest runs: cheap at any store size


@dataclass(slots=True)
class RunRow(RunRecord):
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


@dataclass(frozen=True, slots=True)
class ChangeToken:
    """Cheap to read (an index end, a count, a pragma); differs after any run is added,
    changed or deleted, by this process (``updated_at``, count) or another one
    (``data_version`` moves with every commit made through another connection)."""

    last_update: float
    count: int
    data_version: int = 0


def chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for k in range(0, len(ids), CHUNK):
        yield list(ids[k:k + CHUNK])


def marks(part: Sequence[str]) -> str:
    """``?,?,…`` for an ``IN (…)`` list of ``part``."""
    return ",".join("?" * len(part))


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


class RunsCatalog:
    """Read-only views of the runs table for the runs page, over the store's connection."""

    def __init__(self, store: Store, metricstore: MetricStore) -> None:
        self._store = store
        self._metricstore = metricstore

    def ids(self, query: RunsQuery, limit: int | None = None) -> list[str]:
        """The ids of ``query``'s runs in display order (the first ``limit`` of them)."""
        sql, args = ids_sql(query)
        if limit is not None:
            sql, args = sql + " LIMIT :limit", {**args, "limit": int(limit)}
        with self._store.lock:
            return [row[0] for row in self._store.db.conn.execute(sql, args)]

    def rows(self, ids: Iterable[str]) -> dict[str, RunRow]:
        """Rows of ``ids`` that still exist, with the last value of every metric series."""
        wanted = list(dict.fromkeys(ids))
        rows: dict[str, RunRow] = {}
        with self._store.lock:
            conn = self._store.db.conn
            for part in chunks(wanted):
                sql = (f"SELECT {_ROW_COLUMNS} FROM runs "  # noqa: S608 - fixed columns
                       f"WHERE id IN ({marks(part)})")
                for r in conn.execute(sql, part):
                    rows[r[0]] = _row(r)
        by_key = {row.host_run_id: row for row in rows.values()}
        for key, values in self._metricstore.last_values(list(by_key)).items():
            by_key[key].metrics = values
        return rows

    def metric_values(self, rows: Iterable[RunRow]) -> dict[str, dict[str, float]]:
        """run id → {series: last value} for the given rows (their current attempts)."""
        by_key = {row.host_run_id: row.id for row in rows}
        return {by_key[key]: values
                for key, values in self._metricstore.last_values(list(by_key)).items()}

    def change_token(self) -> ChangeToken:
        with self._store.lock:
            conn = self._store.db.conn
            row = conn.execute(
                "SELECT COALESCE(MAX(updated_at), 0), COUNT(*) FROM runs").fetchone()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        return ChangeToken(float(row[0]), int(row[1]), int(version))

    def changed_since(self, since: float) -> list[str]:
        """Runs written at or after ``since - LATE_COMMIT_S`` (a few rows too many is
        cheap)."""
        with self._store.lock:
            return [r[0] for r in self._store.db.conn.execute(
                "SELECT id FROM runs WHERE updated_at >= ?", [since - LATE_COMMIT_S])]

    def filter_choices(self) -> tuple[list[str], list[str]]:
        """(hosts, tags) seen on recent runs, sorted."""
        with self._store.lock:
            conn = self._store.db.conn
            hosts = [r[0] for r in conn.execute(
                "SELECT DISTINCT host FROM (SELECT host FROM runs ORDER BY id DESC LIMIT ?) "
                "WHERE host IS NOT NULL ORDER BY host", [RECENT])]
            tags = [r[0] for r in conn.execute(
                "SELECT DISTINCT j.value FROM (SELECT tags FROM runs ORDER BY id DESC "
                "LIMIT ?) AS r, json_each(r.tags) AS j ORDER BY j.value", [RECENT])]
        return hosts, tags

    def column_choices(self) -> tuple[list[str], list[str]]:
        """(metric names, parameter keys) of recent runs, for the header's column menu."""
        with self._store.lock:
            conn = self._store.db.conn
            metrics = [r[0] for r in conn.execute(
                "SELECT DISTINCT name FROM (SELECT name FROM metric_series ORDER BY id DESC "
                "LIMIT ?) ORDER BY name", [RECENT * 4])]
            params = [r[0] for r in conn.execute(
                "SELECT DISTINCT j.key FROM (SELECT params FROM runs ORDER BY id DESC "
                "LIMIT ?) AS r, json_each(r.params) AS j ORDER BY j.key", [RECENT])]
        return metrics, params
