"""The SQLite schema of the local store, as an ordered list of migrations.

``PRAGMA user_version`` holds how many migrations a store file has had. Migration *n*
(1-based) is ``MIGRATIONS[n - 1]``; each runs inside the store's write transaction, so
a store is either fully at version *n* or still at *n - 1*. To change the schema, append
a function to ``MIGRATIONS``: never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _m1_hosts_and_settings(db: sqlite_utils.Database) -> None:
    db.table("hosts").create(
        {
            "name": str,
            "hostname": str,
            "port": int,
            "user": str,
            "key_filename": str,
            "ssh_alias": str,
            "proxy_jump": str,  # JSON list of "user@host:port" hops, first hop first
            "local": int,
            "backend": str,
            "sim_gpus": int,
            "interval_s": float,
            "nvidia_smi": str,
            "tags": str,  # JSON list of strings
            "added_at": float,
        },
        pk="name",
        not_null={"name", "local", "backend", "sim_gpus", "interval_s", "proxy_jump", "tags"},
        defaults={
            "local": 0,
            "backend": "auto",
            "sim_gpus": 0,
            "interval_s": 1.0,
            "proxy_jump": "[]",
            "tags": "[]",
        },
    )
    db.table("settings").create({"key": str, "value": str}, pk="key")


def _m2_runs_and_reservations(db: sqlite_utils.Database) -> None:
    # Columns mirror app.core.queue.runs.Run; JSON text for the structured ones. No foreign key
    # to hosts: a run keeps its history when its host is removed.
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,             -- JSON: JobSpec.to_dict()
            state TEXT NOT NULL,
            user TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            seq INTEGER NOT NULL,           -- FIFO position among equal priority
            attempt INTEGER NOT NULL DEFAULT 0,
            host TEXT,
            gpus TEXT NOT NULL DEFAULT '[]',       -- JSON list of GPU indices
            gpu_uuids TEXT NOT NULL DEFAULT '[]',  -- JSON list of GPU uuids
            started_at REAL,
            ended_at REAL,
            exit_code INTEGER,
            pid INTEGER,
            boot_id TEXT,
            reason TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',       -- JSON list of strings
            params TEXT NOT NULL DEFAULT '{}',     -- JSON object
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            queued_at REAL,
            updated_at REAL
        )
        """
    )
    # The queue order (priority desc, seq asc) read straight off one index.
    db.execute("CREATE INDEX runs_queue ON runs (state, priority DESC, seq)")
    # Newest-first listing, whole or filtered by state, paged with LIMIT/OFFSET: both
    # walk an index (the primary key, or this one) instead of sorting 100k rows.
    db.execute("CREATE INDEX runs_state_id ON runs (state, id)")
    # MAX(seq) for the next submission, and runs by host for reconcile.
    db.execute("CREATE INDEX runs_seq ON runs (seq)")
    db.execute("CREATE INDEX runs_host_state ON runs (host, state)")
    db.execute(
        """
        CREATE TABLE reservations (
            host TEXT NOT NULL,
            gpu_index INTEGER NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            PRIMARY KEY (host, gpu_index)
        )
        """
    )


def _m3_metrics_and_console(db: sqlite_utils.Database) -> None:
    # Layout chosen by measurement: see app.core.metrics.metricstore. A series is a row with its
    # running summary; its points live in columnar chunks (int64 steps, float64 wall times
    # and values as raw little-endian arrays), appended in arrival order.
    db.execute(
        """
        CREATE TABLE metric_series (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            first_step INTEGER,
            last_step INTEGER,
            first_wall REAL,
            last_wall REAL,
            last_value REAL,        -- NULL when the last value is NaN (SQLite stores no NaN)
            min_value REAL,         -- over the non-NaN values; NULL while there are none
            max_value REAL,
            UNIQUE (run_id, name)
        )
        """
    )
    # n comes before the blobs so reading it never touches their overflow pages.
    db.execute(
        """
        CREATE TABLE metric_chunks (
            series_id INTEGER NOT NULL,
            chunk_no INTEGER NOT NULL,
            n INTEGER NOT NULL,
            steps BLOB NOT NULL,
            walls BLOB NOT NULL,
            vals BLOB NOT NULL,
            PRIMARY KEY (series_id, chunk_no)
        )
        """
    )
    # The console as received: row `start` holds bytes [start, start + length(data)) of
    # the run's stored console (the concatenation of every byte received, in order).
    db.execute(
        """
        CREATE TABLE log_chunks (
            run_id TEXT NOT NULL,
            start INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, start)
        )
        """
    )
    # Where each tailed file of a run resumes; written in the transaction that stores the
    # content up to `offset`. reset_start is the file offset at which the current segment
    # began with a reset chunk (-1: not begun by a reset), to drop a repeated reset.
    db.execute(
        """
        CREATE TABLE tail_offsets (
            run_id TEXT NOT NULL,
            source TEXT NOT NULL,
            inode INTEGER NOT NULL,
            offset INTEGER NOT NULL,
            reset_start INTEGER NOT NULL DEFAULT -1,
            reset_log_pos INTEGER NOT NULL DEFAULT -1,
            PRIMARY KEY (run_id, source)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE run_params (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,    -- JSON
            PRIMARY KEY (run_id, key)
        ) WITHOUT ROWID
        """
    )


def _m4_run_notes_and_archive(db: sqlite_utils.Database) -> None:
    # What the runs table lets a user add to a run: a free-text note, and "archived"
    # (hidden from the table by default, never deleted). updated_at moves with both, so
    # the table's change poll (WHERE updated_at >= ?) finds them through its index.
    db.execute("ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE runs ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")
    # The table's default listing (not archived, newest first) read off one covering index.
    db.execute("CREATE INDEX runs_archived_id ON runs (archived, id)")
    db.execute("CREATE INDEX runs_updated ON runs (updated_at)")


def _m5_what_hosts_said(db: sqlite_utils.Database) -> None:
    # What each host last said about itself that a submit can be checked against while
    # it is offline (or from the CLI, which does not connect): how many GPUs it has, and
    # the lab policy's cap on this user's GPUs there (NULL: unknown, or no cap).
    db.execute("ALTER TABLE hosts ADD COLUMN gpus_seen INTEGER")
    db.execute("ALTER TABLE hosts ADD COLUMN gpu_quota INTEGER")


Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[Migration] = [
    _m1_hosts_and_settings,
    _m2_runs_and_reservations,
    _m3_metrics_and_console,
    _m4_run_notes_and_archive,
    _m5_what_hosts_said,
]

SCHEMA_VERSION = len(MIGRATIONS)
