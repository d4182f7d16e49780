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


Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[Migration] = [
    _m1_hosts_and_settings,
]

SCHEMA_VERSION = len(MIGRATIONS)
