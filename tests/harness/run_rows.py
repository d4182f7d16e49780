"""What the store holds of a run, read directly (for tests that check nobody changed it)."""

from __future__ import annotations

from typing import Any

from app.core.store import Store

# Tables keyed by the run's id on its host.
TABLES = ("log_chunks", "tail_offsets", "metric_series", "run_params")


def run_rows(store: Store, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``run_id`` in each table, the metric chunks of its series too."""
    with store.lock:
        conn = store.db.conn
        out = {table: conn.execute(f"SELECT * FROM {table} WHERE run_id = ? "
                                   "ORDER BY 1, 2", [run_id]).fetchall()
               for table in TABLES}
        out["metric_chunks"] = conn.execute(
            "SELECT c.* FROM metric_chunks c JOIN metric_series s ON s.id = c.series_id "
            "WHERE s.run_id = ? ORDER BY 1, 2", [run_id]).fetchall()
    return out


def stored_runs(store: Store) -> set[str]:
    """Every run id that has anything stored."""
    with store.lock:
        conn = store.db.conn
        return {row[0] for table in TABLES
                for row in conn.execute(f"SELECT DISTINCT run_id FROM {table}")}


def integrity_ok(store: Store) -> bool:
    """SQLite's own check of the whole file."""
    with store.lock:
        return bool(store.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
