"""The local SQLite store: the hosts Labdeck knows and its settings (runs come later).

One file at ``paths.store_path()``, private (0600), in WAL mode so readers never block the
writer, with ``busy_timeout`` so a second Labdeck process waits instead of failing. Every
write runs in a ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so two
writers queue rather than deadlock on a lock upgrade. The schema lives in
``app.core.schema``.

Threads: a ``Store`` holds one connection opened with ``check_same_thread=False`` and
serialises every call on an internal lock, so one object may be shared by worker threads.
Calls block on disk I/O (and on another process's write for up to ``busy_timeout``):
the GUI must call them from a worker, never on its own thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlite_utils

from app.core import paths
from app.core.schema import MIGRATIONS, SCHEMA_VERSION
from ssh_backend.hostspec import AgentOptions, HostSpec

BUSY_TIMEOUT_MS = 5000
FULL_CLEAR_S = 5.0


class StoreError(Exception):
    """An expected store failure; ``str()`` is a sentence to show the user as is."""


class HostExistsError(StoreError):
    pass


class HostNotFoundError(StoreError):
    pass


class SchemaTooNewError(StoreError):
    pass


class StoreFullError(StoreError):
    """The disk holding the store is full: the write was rolled back, nothing was lost."""


class Store:
    """The hosts and settings of this Labdeck, over one SQLite connection."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        # Use Store.open(); this only wires an already configured connection.
        self._db = db
        self._path = path
        self._lock = threading.RLock()
        self._closed = False
        # The last StoreFullError, when it was raised and when a write last succeeded.
        self._full = ""
        self._full_at = self._ok_at = 0.0

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str | None = None) -> Store:
        """Open (creating and migrating as needed) the store at ``path`` or the default."""
        path = Path(path) if path is not None else paths.store_path()
        try:
            paths.touch_private(path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the Labdeck store at {path}: {exc.strerror}; "
                "check that the directory is writable (or set LABDECK_HOME)"
            ) from None
        conn = sqlite3.connect(
            str(path),
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # no implicit transactions: transaction() decides
            check_same_thread=False,
        )
        try:
            _configure(conn, path)
            db = sqlite_utils.Database(conn, execute_plugins=False)
            store = cls(db, path)
            store._migrate()
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils handle, for modules that own later tables (hold ``lock``)."""
        return self._db

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def disk_full(self) -> str:
        """Why writes fail for want of disk space ("" when they do not). Cleared once a
        write succeeds after FULL_CLEAR_S without another failing: a nearly full disk
        lets some small writes through, which must not read as "space is back"."""
        if self._full and self._ok_at > self._full_at \
                and time.monotonic() - self._full_at >= FULL_CLEAR_S:
            self._full = ""
        return self._full

    def data_version(self) -> int:
        """A number that changes whenever another connection (another Labdeck, a CLI
        command) commits to the file: a cheap "did anyone else write?" before a re-read."""
        with self._lock:
            return int(self._db.conn.execute("PRAGMA data_version").fetchone()[0])

    def schema_version(self) -> int:
        with self._lock:
            return _user_version(self._db.conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success, else rolled back.

        Nested use joins the outer transaction (sqlite-utils' ``atomic`` does the same).
        """
        with self._lock:
            conn = self._db.conn
            if self._closed:
                raise StoreError("the Labdeck store is closed")
            if conn.in_transaction:
                yield self._db
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _busy_or_raise(exc, self._path) from None
            try:
                yield self._db
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_full(exc):
                    raise self._full_error() from None
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_full(exc):
                    raise self._full_error() from None
                raise _busy_or_raise(exc, self._path) from None
            self._ok_at = time.monotonic()

    def _full_error(self) -> StoreFullError:
        error = StoreFullError(
            f"the disk holding {self._path.parent} is full, so nothing could be stored: "
            "free some space there (or move LABDECK_HOME to a disk with room) and try again"
        )
        self._full, self._full_at = str(error), time.monotonic()
        return error

    def _migrate(self) -> None:
        version = _user_version(self._db.conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(_too_new(self._path, version))
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as db:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = _user_version(db.conn)
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(_too_new(self._path, version))
            for number in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[number - 1](db)
            # PRAGMA takes no parameters; SCHEMA_VERSION is an int from this module.
            db.conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")

    # -- hosts ---------------------------------------------------------------------
    def add_host(self, spec: HostSpec, tags: list[str] | None = None) -> None:
        with self.transaction() as db:
            if _host_row(db, spec.name) is not None:
                raise HostExistsError(
                    f"a host named '{spec.name}' already exists; pick another name "
                    f"or remove it first (labdeck hosts rm {spec.name})"
                )
            row = _row_from_spec(spec)
            row["tags"] = json.dumps(list(tags or []))
            row["added_at"] = time.time()
            db.table("hosts").insert(row)

    def update_host(self, spec: HostSpec) -> None:
        """Replace how host ``spec.name`` is reached and sampled (tags and age are kept)."""
        row = _row_from_spec(spec)
        name = row.pop("name")
        assignments = ", ".join(f"[{column}] = ?" for column in row)
        with self.transaction() as db:
            cursor = db.conn.execute(
                f"UPDATE hosts SET {assignments} WHERE name = ?",  # noqa: S608 - fixed columns
                [*row.values(), name],
            )
            if cursor.rowcount == 0:
                raise HostNotFoundError(_no_such_host(name))

    def remove_host(self, name: str) -> None:
        with self.transaction() as db:
            cursor = db.conn.execute("DELETE FROM hosts WHERE name = ?", [name])
            if cursor.rowcount == 0:
                raise HostNotFoundError(_no_such_host(name))

    def hosts(self) -> list[HostSpec]:
        """Every host, in the order they were added."""
        with self._lock:
            rows = self._db.query("SELECT * FROM hosts ORDER BY added_at, name")
            return [_spec_from_row(row) for row in rows]

    def host(self, name: str) -> HostSpec | None:
        with self._lock:
            row = _host_row(self._db, name)
            return _spec_from_row(row) if row is not None else None

    def host_tags(self, name: str) -> list[str]:
        with self._lock:
            row = _host_row(self._db, name)
            if row is None:
                raise HostNotFoundError(_no_such_host(name))
            return [str(tag) for tag in json.loads(row["tags"])]

    def set_host_tags(self, name: str, tags: list[str]) -> None:
        with self.transaction() as db:
            cursor = db.conn.execute(
                "UPDATE hosts SET tags = ? WHERE name = ?", [json.dumps(list(tags)), name]
            )
            if cursor.rowcount == 0:
                raise HostNotFoundError(_no_such_host(name))

    def note_host_said(self, name: str, gpus: int | None, quota: int | None) -> None:
        """Remember a host's GPU count and this user's lab quota there (see schema m5)."""
        with self.transaction() as db:
            db.conn.execute("UPDATE hosts SET gpus_seen = ?, gpu_quota = ? WHERE name = ?",
                            [gpus, quota, name])

    def hosts_said(self) -> dict[str, tuple[int | None, int | None, list[str]]]:
        """Per host: (GPUs last seen, lab quota last seen, tags)."""
        with self._lock:
            rows = self._db.query("SELECT name, gpus_seen, gpu_quota, tags FROM hosts")
            return {row["name"]: (row["gpus_seen"], row["gpu_quota"],
                                  [str(t) for t in json.loads(row["tags"])]) for row in rows}

    # -- settings ------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._lock:
            rows = list(self._db.query("SELECT value FROM settings WHERE key = ?", [key]))
            return json.loads(rows[0]["value"]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store any JSON-serialisable ``value`` under ``key`` (replacing the old one)."""
        encoded = json.dumps(value)
        with self.transaction() as db:
            db.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, encoded],
            )


# -- helpers -------------------------------------------------------------------------
def _configure(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a usable Labdeck store ({exc}); move it aside and "
            "start Labdeck again to create a fresh one"
        ) from None
    if str(mode).lower() != "wal":
        raise StoreError(
            f"cannot use write-ahead logging for {path} (got journal mode {mode!r}); "
            "keep the Labdeck data directory on a local disk (set LABDECK_HOME)"
        )


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _too_new(path: Path, version: int) -> str:
    return (
        f"this store was written by a newer Labdeck (schema {version}; this Labdeck knows "
        f"up to {SCHEMA_VERSION}); upgrade Labdeck ({path})"
    )


def _is_full(exc: BaseException) -> bool:
    """SQLITE_FULL: SQLite's answer when a write meets ENOSPC (or the disk quota)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and \
        code & 0xFF == sqlite3.SQLITE_FULL


def _busy_or_raise(exc: sqlite3.OperationalError, path: Path) -> Exception:
    if "locked" in str(exc) or "busy" in str(exc):
        return StoreError(
            f"the Labdeck store {path} stayed busy for {BUSY_TIMEOUT_MS // 1000} s "
            "(another Labdeck is writing); try again"
        )
    return exc


def _no_such_host(name: str) -> str:
    return f"no host named '{name}'; see the list with: labdeck hosts ls"


def _host_row(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM hosts WHERE name = ?", [name]))
    return rows[0] if rows else None


def _row_from_spec(spec: HostSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "hostname": spec.hostname,
        "port": spec.port,
        "user": spec.user,
        "key_filename": spec.key_filename,
        "ssh_alias": spec.ssh_alias,
        "proxy_jump": json.dumps(list(spec.proxy_jump)),
        "local": int(spec.local),
        "backend": spec.agent.backend,
        "sim_gpus": spec.agent.sim_gpus,
        "interval_s": spec.agent.interval_s,
        "nvidia_smi": spec.agent.nvidia_smi,
    }


def _spec_from_row(row: dict[str, Any]) -> HostSpec:
    return HostSpec(
        name=row["name"],
        hostname=row["hostname"],
        port=row["port"],
        user=row["user"],
        key_filename=row["key_filename"],
        ssh_alias=row["ssh_alias"],
        proxy_jump=tuple(str(hop) for hop in json.loads(row["proxy_jump"] or "[]")),
        local=bool(row["local"]),
        agent=AgentOptions(
            interval_s=float(row["interval_s"]),
            backend=row["backend"],
            sim_gpus=int(row["sim_gpus"]),
            nvidia_smi=row["nvidia_smi"],
        ),
    )
