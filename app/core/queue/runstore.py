"""The run queue in the local store: submit, list, and compare-and-set state changes.

Every state change is ``UPDATE runs SET state=? … WHERE id=? AND state=?`` inside the
store's ``BEGIN IMMEDIATE`` transaction and reports whether exactly one row changed. Two
dispatchers (threads or processes) racing for the same run therefore cannot both win:
the loser sees ``False`` and moves on. GPU reservations ("keep GPU k for my manual work")
live here too, since the scheduler reads them with the queue.

Like ``Store``, every call blocks on disk I/O: never call it on the GUI thread.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from app.core.queue.runs import RUN_ID_RE, Run, RunState, check_transition
from app.core.store import Store, StoreError

ACTIVE = frozenset({RunState.LAUNCHING, RunState.RUNNING})

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Columns a caller may set along with a transition (``state`` and ``id`` never).
_SETTABLE = frozenset(
    {"name", "priority", "host", "gpus", "gpu_uuids", "started_at", "ended_at", "exit_code",
     "pid", "boot_id", "reason", "tags", "params", "cancel_requested"}
)
_JSON_COLUMNS = frozenset({"gpus", "gpu_uuids", "tags", "params"})
_ACTIVE_SQL = "('launching', 'running')"


class RunNotFoundError(StoreError):
    pass


class RunStateError(StoreError):
    """A user action that the run's current state does not allow (retry a running run)."""


def _base36(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


class _IdClock:
    """Milliseconds that never repeat in this process, so ids of one batch sort in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next_ms(self) -> int:
        with self._lock:
            self._last = max(int(time.time() * 1000), self._last + 1)
            return self._last


_CLOCK = _IdClock()


def new_run_id() -> str:
    """``r`` + 8 base36 digits of milliseconds (sorts by time until 2059) + 4 random."""
    run_id = "r" + _base36(_CLOCK.next_ms(), 8) + _base36(secrets.randbelow(36**4), 4)
    assert RUN_ID_RE.match(run_id)
    return run_id


class RunStore:
    """The runs and GPU reservations of one ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # queued() is read every dispatch cycle: rows that did not change since the last
        # call reuse their Run instead of parsing the spec JSON again.
        self._queued_cache: dict[str, tuple[tuple[Any, ...], Run]] = {}

    # -- submit and read -----------------------------------------------------------
    def submit(self, specs: list[dict[str, Any]], user: str) -> list[str]:
        """Queue one run per spec (``JobSpec.to_dict()`` form), all or none; returns ids."""
        if not user:
            raise ValueError("a run needs a user")
        rows = [_row_from_spec(spec) for spec in specs]
        now = time.time()
        ids: list[str] = []
        with self._store.transaction() as db:
            seq = _max_seq(db.conn) + 1
            for row in rows:
                run_id = new_run_id()
                ids.append(run_id)
                row.update(id=run_id, user=user, state=RunState.QUEUED.value, seq=seq,
                           created_at=now, queued_at=now, updated_at=now)
                seq += 1
            if rows:
                columns = list(rows[0])
                db.conn.executemany(
                    f"INSERT INTO runs ({', '.join(columns)}) "  # noqa: S608 - fixed columns
                    f"VALUES ({', '.join('?' for _ in columns)})",
                    [[row[c] for c in columns] for row in rows],
                )
        return ids

    def get(self, run_id: str) -> Run | None:
        runs = self._select("WHERE id = ?", [run_id])
        return runs[0] if runs else None

    def list_runs(
        self,
        states: Collection[RunState] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Run]:
        """Runs newest first (ids sort by submission time), optionally one page of them."""
        where, args = _state_filter(states)
        page = ""
        if limit is not None or offset:
            page = " LIMIT ? OFFSET ?"
            args = [*args, -1 if limit is None else int(limit), int(offset)]
        return self._select(f"{where} ORDER BY id DESC{page}", args)

    def count(self, states: Collection[RunState] | None = None) -> int:
        where, args = _state_filter(states)
        with self._store.lock:
            sql = f"SELECT COUNT(*) FROM runs {where}"  # noqa: S608 - fixed fragments
            return int(self._store.db.conn.execute(sql, args).fetchone()[0])

    def queued(self) -> list[Run]:
        """The queue in dispatch order before fair share: priority desc, then FIFO.

        Unchanged runs are the same objects as last time: treat them (and their spec
        dicts) as read-only.
        """
        with self._store.lock:
            rows = self._store.db.conn.execute(
                f"SELECT {_COLUMNS_SQL} FROM runs "  # noqa: S608 - fixed columns
                "WHERE state = 'queued' ORDER BY priority DESC, seq ASC"
            ).fetchall()
            cache = self._queued_cache
            fresh: dict[str, tuple[tuple[Any, ...], Run]] = {}
            for row in rows:
                hit = cache.get(row[0])
                fresh[row[0]] = hit if hit is not None and hit[0] == row else (
                    row, _run_from_row(row))
            self._queued_cache = fresh
            return [fresh[row[0]][1] for row in rows]

    def active(self) -> list[Run]:
        """Runs that hold GPUs: launching and running."""
        return self._select(f"WHERE state IN {_ACTIVE_SQL} ORDER BY id", [])

    def running_on(self, host: str) -> list[Run]:
        """Launching and running runs placed on ``host`` (what reconcile must ask about)."""
        return self._select(f"WHERE host = ? AND state IN {_ACTIVE_SQL} ORDER BY id", [host])

    def cancel_requested(self) -> list[Run]:
        """Active runs whose cancel the dispatcher still has to carry out."""
        return self._select(
            f"WHERE state IN {_ACTIVE_SQL} AND cancel_requested = 1 ORDER BY id", []
        )

    def busy_gpus(self) -> set[tuple[str, int]]:
        """(host, GPU index) held by active runs: the scheduler's ``in_flight`` base."""
        return {(run.host, gpu) for run in self.active() if run.host for gpu in run.gpus}

    # -- state changes -------------------------------------------------------------
    def transition(
        self, run_id: str, old: RunState, new: RunState, *, keep_attempt: bool = False,
        **fields: Any,
    ) -> bool:
        """Move ``run_id`` from ``old`` to ``new`` if it is still in ``old``.

        Re-entering QUEUED bumps ``attempt`` (each attempt has its own folder on its
        host), clears the placement and restarts the wait clock (the FIFO position
        ``seq`` is kept: a refused or lost run keeps its turn). ``keep_attempt``: the
        host refused the launch and removed the attempt's folder, so the same attempt id
        may be launched again (refusals then never multiply folders on a host).
        A run whose cancel was requested while it was launching does not go back to the
        queue: LAUNCHING → QUEUED then ends it CANCELLED (still ``True``: the row moved).
        """
        old, new = RunState(old), RunState(new)
        check_transition(old, new)
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} on a run")
        now = time.time()
        values: dict[str, Any] = {}
        with self._store.transaction() as db:
            row = db.conn.execute(
                "SELECT state, cancel_requested FROM runs WHERE id = ?", [run_id]
            ).fetchone()
            if row is None or row[0] != old.value:
                return False
            bump = ""
            if new is RunState.QUEUED and old is RunState.LAUNCHING and row[1]:
                new = RunState.CANCELLED
                values.update(ended_at=now, reason="cancelled before it started")
            elif new is RunState.QUEUED:
                bump = "" if keep_attempt else ", attempt = attempt + 1"
                values.update(host=None, gpus=(), gpu_uuids=(), pid=None, boot_id=None,
                              started_at=None, ended_at=None, exit_code=None, reason="",
                              cancel_requested=False, queued_at=now)
            if new.finished:
                values["cancel_requested"] = False  # acted upon: nothing left to cancel
            values.update(fields)
            values.update(state=new.value, updated_at=now)
            encoded = {key: _encode(key, value) for key, value in values.items()}
            sets = ", ".join(f"[{key}] = ?" for key in encoded)
            cursor = db.conn.execute(
                f"UPDATE runs SET {sets}{bump} WHERE id = ? AND state = ?",  # noqa: S608
                [*encoded.values(), run_id, old.value],
            )
            return cursor.rowcount == 1

    def claim(
        self, run_id: str, host: str, gpus: Iterable[int], gpu_uuids: Iterable[str]
    ) -> bool:
        """QUEUED → LAUNCHING on ``host``/``gpus``; ``False`` if another claimer won.

        Also ``False`` when an active run of this store already holds one of those GPUs:
        two dispatchers sharing a store can then never book one GPU twice, even before
        the host's lease would refuse the second launch.
        """
        indices = tuple(int(g) for g in gpus)
        uuids = tuple(str(u) for u in gpu_uuids)
        if len(indices) != len(uuids) or len(set(indices)) != len(indices):
            raise ValueError("claim needs distinct GPU indices, one uuid each")
        with self._store.transaction():
            taken = {g for run in self.running_on(host) for g in run.gpus}
            if taken & set(indices):
                return False
            return self.transition(
                run_id, RunState.QUEUED, RunState.LAUNCHING, host=host, gpus=indices,
                gpu_uuids=uuids,
            )

    def set_waiting_reasons(self, reasons: Mapping[str, str]) -> list[str]:
        """Why each queued run waits (the scheduler's words); only rows still queued and
        whose reason changed are written. Returns the ids that changed."""
        changed: list[str] = []
        with self._store.transaction() as db:
            for run_id, reason in reasons.items():
                cursor = db.conn.execute(
                    "UPDATE runs SET reason = ? WHERE id = ? AND state = 'queued' "
                    "AND reason IS NOT ?", [reason, run_id, reason])
                if cursor.rowcount:
                    changed.append(run_id)
        return changed

    def request_cancel(self, run_id: str) -> Run:
        """Cancel: a queued run ends now; an active one is flagged for the dispatcher."""
        with self._store.transaction() as db:
            run = self._require(run_id)
            if run.state is RunState.QUEUED:
                self.transition(run_id, RunState.QUEUED, RunState.CANCELLED,
                                ended_at=time.time(), reason="cancelled while queued")
            elif run.state in ACTIVE:
                db.conn.execute(
                    "UPDATE runs SET cancel_requested = 1, updated_at = ? "
                    "WHERE id = ? AND state = ?",
                    [time.time(), run_id, run.state.value],
                )
            return self._require(run_id)

    def retry(self, run_id: str) -> Run:
        """Queue a finished run again (attempt + 1), keeping its place in the FIFO."""
        with self._store.transaction():
            run = self._require(run_id)
            if not run.state.finished:
                raise RunStateError(
                    f"run {run_id} is {run.state}; only a finished run can be retried"
                )
            self.transition(run_id, run.state, RunState.QUEUED)
            return self._require(run_id)

    def delete(self, run_id: str) -> None:
        """Forget a finished run (its folder on the host stays)."""
        with self._store.transaction() as db:
            run = self._require(run_id)
            if not run.state.finished:
                raise RunStateError(
                    f"run {run_id} is {run.state}; cancel it first, then delete it"
                )
            db.conn.execute(
                "DELETE FROM runs WHERE id = ? AND state = ?", [run_id, run.state.value]
            )

    def move(self, run_id: str, delta: int) -> int:
        """Move a queued run ``delta`` places (negative = earlier) among queued runs of its
        priority; returns how many places it actually moved (signed).

        Priority is the user's explicit ranking, so a move never crosses it: to jump
        ahead of higher-priority runs, raise the priority instead.
        """
        with self._store.transaction() as db:
            run = self._require(run_id)
            if run.state is not RunState.QUEUED:
                raise RunStateError(f"run {run_id} is {run.state}; only queued runs move")
            rows = db.conn.execute(
                "SELECT id, seq FROM runs WHERE state = 'queued' AND priority = ? "
                "ORDER BY seq", [run.priority]
            ).fetchall()
            order = [r[0] for r in rows]
            seqs = [r[1] for r in rows]
            i = order.index(run_id)
            j = max(0, min(len(order) - 1, i + int(delta)))
            if i == j:
                return 0
            order.insert(j, order.pop(i))
            # The same seq values, handed out in the new order: other priorities unaffected.
            lo, hi = min(i, j), max(i, j) + 1
            now = time.time()
            db.conn.executemany(
                "UPDATE runs SET seq = ?, updated_at = ? WHERE id = ?",
                [(seq, now, rid) for seq, rid in zip(seqs[lo:hi], order[lo:hi], strict=True)],
            )
            return j - i

    # -- reservations --------------------------------------------------------------
    def reserve(self, host: str, gpu_index: int, note: str = "") -> None:
        with self._store.transaction() as db:
            db.conn.execute(
                "INSERT INTO reservations (host, gpu_index, note, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(host, gpu_index) DO UPDATE SET note = "
                "excluded.note",
                [host, int(gpu_index), note, time.time()],
            )

    def unreserve(self, host: str, gpu_index: int) -> None:
        with self._store.transaction() as db:
            db.conn.execute(
                "DELETE FROM reservations WHERE host = ? AND gpu_index = ?",
                [host, int(gpu_index)],
            )

    def reserved(self) -> set[tuple[str, int]]:
        with self._store.lock:
            rows = self._store.db.conn.execute("SELECT host, gpu_index FROM reservations")
            return {(str(host), int(index)) for host, index in rows}

    def reservations(self) -> list[tuple[str, int, str]]:
        """(host, GPU index, note) of every reservation, for display."""
        with self._store.lock:
            rows = self._store.db.conn.execute(
                "SELECT host, gpu_index, note FROM reservations ORDER BY host, gpu_index"
            )
            return [(str(h), int(i), str(n)) for h, i, n in rows]

    # -- helpers -------------------------------------------------------------------
    def _select(self, tail: str, args: list[Any]) -> list[Run]:
        with self._store.lock:
            cursor = self._store.db.conn.execute(
                f"SELECT {_COLUMNS_SQL} FROM runs {tail}", args  # noqa: S608
            )
            return [_run_from_row(row) for row in cursor]

    def _require(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run is None:
            raise RunNotFoundError(f"no run {run_id!r}; list runs with: labdeck ls")
        return run


def _max_seq(conn: Any) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM runs").fetchone()[0])


def _state_filter(states: Collection[RunState] | None) -> tuple[str, list[Any]]:
    if states is None:
        return "", []
    values = [RunState(s).value for s in states]
    if not values:
        return "WHERE 0", []
    return f"WHERE state IN ({', '.join('?' * len(values))})", values


def _row_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("every job spec needs a non-empty 'name'")
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"job '{name}': 'priority' must be an integer")
    tags = spec.get("tags") or ()
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise ValueError(f"job '{name}': 'tags' must be a list of strings")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"job '{name}': 'params' must be a mapping")
    return {
        "name": name,
        "spec": json.dumps(dict(spec)),
        "priority": priority,
        "tags": json.dumps([str(t) for t in tags]),
        "params": json.dumps(dict(params)),
    }


def _encode(key: str, value: Any) -> Any:
    if key in _JSON_COLUMNS:
        return json.dumps(list(value) if isinstance(value, tuple | list) else value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, RunState):
        return value.value
    return value


# The columns read back into a Run, in the order _run_from_row unpacks them.
_COLUMNS_SQL = (
    "id, name, spec, state, user, priority, created_at, seq, attempt, host, gpus, "
    "gpu_uuids, started_at, ended_at, exit_code, pid, boot_id, reason, tags, params, "
    "cancel_requested, queued_at"
)
_EMPTY_LIST = "[]"


def _loads_list(text: str) -> list[Any]:
    # Most runs have no placement or tags: skip the JSON parser for the common case,
    # which keeps reading a 10k-run queue well under a second.
    return [] if text == _EMPTY_LIST else list(json.loads(text))


def _run_from_row(row: tuple[Any, ...]) -> Run:
    (run_id, name, spec, state, user, priority, created_at, seq, attempt, host, gpus,
     gpu_uuids, started_at, ended_at, exit_code, pid, boot_id, reason, tags, params,
     cancel_requested, queued_at) = row
    return Run(
        id=run_id, name=name, spec=json.loads(spec), state=RunState(state), user=user,
        priority=priority, created_at=created_at, seq=seq, attempt=attempt, host=host,
        gpus=tuple(_loads_list(gpus)), gpu_uuids=tuple(_loads_list(gpu_uuids)),
        started_at=started_at, ended_at=ended_at, exit_code=exit_code, pid=pid,
        boot_id=boot_id, reason=reason, tags=tuple(_loads_list(tags)),
        params={} if params == "{}" else json.loads(params),
        cancel_requested=bool(cancel_requested), queued_at=queued_at,
    )
