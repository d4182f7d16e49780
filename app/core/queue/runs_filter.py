"""What the runs table asks for (``RunsQuery``: filter text, filter bar, sort) and the SQL
that answers it: the matching run ids in display order.

ORDER BY comes only from ``SORTS`` (fixed SQL fragments); filter words, metric names and
parameter keys are bound parameters, never pasted into SQL.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from app.core.queue.runs import RunState

STATE_ORDER = tuple(RunState)
_STATE_RANK = "CASE state " + " ".join(
    f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(STATE_ORDER)) + " END"
# ``Run.host_run_id`` in SQL: the metric store keys a run's curves by that id. A unit test
# holds the two spellings equal.
HOST_RUN_ID_SQL = ("(CASE WHEN runs.attempt > 0 THEN runs.id || '-a' || runs.attempt "
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
    "metric": ("(SELECT last_value FROM metric_series "  # noqa: S608 - fixed fragment
               f"WHERE run_id = {HOST_RUN_ID_SQL} AND metric_series.name = :sort_arg)",),
    "param": ("json_extract(params, :sort_arg)",),
}
# Free-text words match any of these columns.
_TEXT_COLUMNS = ("name", "id", "user", "COALESCE(host, '')", "tags", "note")


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
            f"{col} LIKE :t{n} ESCAPE '\\'" for col in _TEXT_COLUMNS) + ")")
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
