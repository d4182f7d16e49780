"""The local SQLite store on a real file: schema, privacy, errors, concurrent writers
(threads here; processes in tests/integration/test_store_processes.py)."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest
import sqlite_utils

from app.core import paths, schema
from app.core import store as store_mod
from app.core.store import (
    HostExistsError,
    HostNotFoundError,
    SchemaTooNewError,
    Store,
    StoreError,
)
from ssh_backend.hostspec import AgentOptions, HostSpec


def full_spec(name: str = "gpu1") -> HostSpec:
    return HostSpec(
        name=name,
        hostname="10.0.0.7",
        port=2222,
        user="alice",
        key_filename="/keys/id_ed25519",
        ssh_alias="gpubox",
        proxy_jump=("bob@bastion:22", "carol@[::1]:2200"),
        local=False,
        agent=AgentOptions(interval_s=0.5, backend="sim", sim_gpus=4, nvidia_smi="/opt/smi"),
    )


def test_fresh_store_is_migrated_private_and_in_wal_mode(store: Store, home: Path) -> None:
    path = paths.store_path()
    assert store.path == path and path.parent == home
    assert store.schema_version() == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    store.set_setting("probe", 1)  # forces the -wal file into existence
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and not stat.S_IMODE(wal.stat().st_mode) & 0o077
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        columns = {row[1] for row in other.execute("PRAGMA table_info(hosts)")}
    assert {"name", "hostname", "port", "user", "key_filename", "ssh_alias", "proxy_jump",
            "local", "backend", "sim_gpus", "interval_s", "tags", "added_at"} <= columns
    conn = store.db.conn
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_existing_loose_file_is_made_private(home: Path) -> None:
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    path = home / "labdeck.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Store.open().close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A folder Labdeck did not create keeps its mode (its files are private all the same).
    assert stat.S_IMODE(home.stat().st_mode) == 0o755


def test_host_round_trip_keeps_every_field_and_order(store: Store) -> None:
    first = full_spec("gpu1")
    second = HostSpec(name="box", hostname="box.lab", local=False)
    store.add_host(first, tags=["fast", "a100"])
    store.add_host(second)
    assert store.hosts() == [first, second]
    assert store.host("gpu1") == first
    assert store.host("nope") is None
    assert store.host_tags("gpu1") == ["fast", "a100"]
    # Survives closing and reopening: it is on disk, not in memory.
    store.close()
    with Store.open() as again:
        assert again.hosts() == [first, second]


def test_duplicate_name_is_refused_with_a_clear_error(store: Store) -> None:
    store.add_host(full_spec("gpu1"))
    with pytest.raises(HostExistsError, match="a host named 'gpu1' already exists"):
        store.add_host(HostSpec(name="gpu1", hostname="other"))
    assert store.host("gpu1") == full_spec("gpu1")


def test_update_and_remove(store: Store) -> None:
    store.add_host(full_spec("gpu1"), tags=["keep"])
    changed = HostSpec(name="gpu1", hostname="new.lab", port=22, user="bob")
    store.update_host(changed)
    assert store.host("gpu1") == changed
    assert store.host_tags("gpu1") == ["keep"]
    with pytest.raises(HostNotFoundError, match="no host named 'ghost'"):
        store.update_host(HostSpec(name="ghost"))
    store.remove_host("gpu1")
    assert store.hosts() == []
    with pytest.raises(HostNotFoundError, match="labdeck hosts ls"):
        store.remove_host("gpu1")


def test_settings_hold_json_values(store: Store) -> None:
    assert store.get_setting("theme") is None
    assert store.get_setting("theme", "dark") == "dark"
    store.set_setting("theme", "light")
    store.set_setting("columns", {"util": True, "widths": [1, 2.5, None]})
    store.set_setting("theme", "dark")
    assert store.get_setting("theme") == "dark"
    assert store.get_setting("columns") == {"util": True, "widths": [1, 2.5, None]}


def test_failed_write_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.table("settings").insert({"key": "half", "value": "1"})
        raise RuntimeError("boom")
    assert store.get_setting("half") is None
    assert not store.db.conn.in_transaction


def test_newer_schema_is_refused_clearly(home: Path) -> None:
    Store.open().close()
    with sqlite3.connect(paths.store_path()) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 5}")
    with pytest.raises(SchemaTooNewError) as info:
        Store.open()
    message = str(info.value)
    assert f"newer Labdeck (schema {schema.SCHEMA_VERSION + 5}" in message
    assert "upgrade Labdeck" in message


def test_a_file_that_is_not_sqlite_is_a_store_error(home: Path) -> None:
    paths.store_path().write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(StoreError, match="not a usable Labdeck store"):
        Store.open()


def test_a_new_migration_runs_once_on_an_old_store(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open() as old:
        old.add_host(full_spec("gpu1"))
    calls: list[int] = []

    def m_next(db: sqlite_utils.Database) -> None:
        calls.append(1)
        db.execute("CREATE TABLE probe (id TEXT PRIMARY KEY, host TEXT REFERENCES hosts(name))")

    next_version = len(schema.MIGRATIONS) + 1
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*schema.MIGRATIONS, m_next])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", next_version)
    with Store.open() as new:
        assert new.schema_version() == next_version
        assert new.host("gpu1") == full_spec("gpu1")
        assert "probe" in new.db.table_names()
    with Store.open() as again:
        assert again.schema_version() == next_version
    assert calls == [1]


def test_a_failing_migration_leaves_the_store_as_it_was(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open().close()

    def m2_breaks(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*schema.MIGRATIONS, m2_breaks])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(schema.MIGRATIONS) + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store.open()
    with sqlite3.connect(paths.store_path()) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables


def test_threads_sharing_one_store_and_threads_with_their_own(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(s: Store, prefix: str, n: int) -> None:
        try:
            for i in range(n):
                s.add_host(HostSpec(name=f"{prefix}{i}", hostname="h"))
                s.set_setting(f"{prefix}-last", i)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    own = [Store.open(), Store.open()]
    threads = [
        threading.Thread(target=writer, args=(store, "shared-a", 60)),
        threading.Thread(target=writer, args=(store, "shared-b", 60)),
        threading.Thread(target=writer, args=(own[0], "own-a", 60)),
        threading.Thread(target=writer, args=(own[1], "own-b", 60)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in own:
        s.close()
    assert errors == []
    assert len(store.hosts()) == 240
    assert store.get_setting("own-b-last") == 59
    assert store.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


