"""A run's console bytes in SQLite: append in rows of bounded size, read any byte range.

The stored console of a run is the concatenation of every byte received for its
``output.log``, in order. Row ``(run_id, start)`` of ``log_chunks`` holds bytes
``[start, start + length(data))``; rows are contiguous and at most ``ROW_MAX`` bytes. A
small last row is rewritten to absorb small appends (a chatty job sends many tiny chunks),
so rows stay few without ever rewriting more than ``SMALL_ROW`` old bytes per append.

Why rows in SQLite rather than a per-run side file: the bytes commit in the same
transaction as the tail offset, so a crash can never leave them out of step (no
truncate-to-committed repair on open, no fsync ordering between two files), and a range
read is one index range scan. Measured in tests/bench/bench_ingest.py (see
``app.core.metrics.metricstore`` for the figures).

The caller holds the store's write transaction for ``append``; nothing here commits.
"""

from __future__ import annotations

import sqlite3

ROW_MAX = 256 * 1024
SMALL_ROW = 16 * 1024
# The most one read returns: callers page through a large console.
READ_MAX = 4 * 1024 * 1024


def size(conn: sqlite3.Connection, run_id: str) -> int:
    row = conn.execute(
        "SELECT start, length(data) FROM log_chunks WHERE run_id = ? "
        "ORDER BY start DESC LIMIT 1",
        [run_id],
    ).fetchone()
    return 0 if row is None else int(row[0]) + int(row[1])


def append(conn: sqlite3.Connection, run_id: str, data: bytes) -> int:
    """Append ``data`` to the run's console; returns the new size."""
    row = conn.execute(
        "SELECT start, length(data) FROM log_chunks WHERE run_id = ? "
        "ORDER BY start DESC LIMIT 1",
        [run_id],
    ).fetchone()
    end = 0 if row is None else int(row[0]) + int(row[1])
    if not data:
        return end
    if row is not None and int(row[1]) < SMALL_ROW:
        start = int(row[0])
        old = conn.execute(
            "SELECT data FROM log_chunks WHERE run_id = ? AND start = ?", [run_id, start]
        ).fetchone()[0]
        data = bytes(old) + data
        conn.execute("DELETE FROM log_chunks WHERE run_id = ? AND start = ?", [run_id, start])
    else:
        start = end
    conn.executemany(
        "INSERT INTO log_chunks (run_id, start, data) VALUES (?, ?, ?)",
        [
            (run_id, start + k, data[k : k + ROW_MAX])
            for k in range(0, len(data), ROW_MAX)
        ],
    )
    return start + len(data)


def read(conn: sqlite3.Connection, run_id: str, start: int = 0, end: int | None = None) -> bytes:
    """Bytes ``[start, end)`` of the stored console, at most ``READ_MAX`` of them.

    ``end`` None means the end of what is stored. A range past the end is cut to it;
    the result is shorter than asked when it would exceed ``READ_MAX``.
    """
    start = max(0, int(start))
    limit = start + READ_MAX
    end = limit if end is None else min(int(end), limit)
    if end <= start:
        return b""
    first = conn.execute(
        "SELECT start FROM log_chunks WHERE run_id = ? AND start <= ? "
        "ORDER BY start DESC LIMIT 1",
        [run_id, start],
    ).fetchone()
    if first is None:
        return b""
    rows = conn.execute(
        "SELECT start, data FROM log_chunks WHERE run_id = ? AND start >= ? AND start < ? "
        "ORDER BY start",
        [run_id, int(first[0]), end],
    ).fetchall()
    if not rows:
        return b""
    joined = b"".join(bytes(data) for _, data in rows)
    base = int(rows[0][0])
    return joined[start - base : end - base]


def delete(conn: sqlite3.Connection, run_id: str) -> None:
    conn.execute("DELETE FROM log_chunks WHERE run_id = ?", [run_id])
