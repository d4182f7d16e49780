"""Columnar chunks of one metric series in SQLite: append, compact, read back as arrays.

A series' points live in ``metric_chunks`` rows of at most ``CHUNK_POINTS`` points, each
row three raw little-endian arrays (int64 steps, float64 wall times, float64 values) in
arrival order. Full rows come first; the non-full rows at the end ("the tail") keep sizes
that at least halve from one row to the next, so a series has at most ~17 tail rows, a
point is rewritten O(log CHUNK_POINTS) times in its life, and one small ingest rewrites
only rows of about its own size (never a megabyte for a handful of points).

The caller holds the store's write transaction; nothing here commits.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

CHUNK_POINTS = 65_536
# A missing step (the source gave none) is stored as this sentinel in the int64 column.
NO_STEP = np.iinfo(np.int64).min

_LE_I8 = np.dtype("<i8")
_LE_F8 = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class PointsArrays:
    """A series' points in arrival order.

    ``step`` is int64 when every point has a step, else float64 with NaN where a point
    has none. ``wall`` (seconds since the epoch) and ``value`` are float64.
    """

    step: np.ndarray
    wall: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.value)


def empty_points() -> PointsArrays:
    return PointsArrays(
        np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
    )


def append(
    conn: sqlite3.Connection,
    series_id: int,
    steps: np.ndarray,
    walls: np.ndarray,
    values: np.ndarray,
) -> None:
    """Append points to series ``series_id`` (inside the caller's transaction)."""
    if len(values) == 0:
        return
    tail = conn.execute(
        "SELECT chunk_no, n FROM metric_chunks WHERE series_id = ? AND n < ? ORDER BY chunk_no",
        [series_id, CHUNK_POINTS],
    ).fetchall()
    merge_from = _merge_start([n for _, n in tail], len(values))
    merged = tail[merge_from:]
    if merged:
        first_no = int(merged[0][0])
        old = _read_rows(
            conn,
            "WHERE series_id = ? AND chunk_no >= ? ORDER BY chunk_no",
            [series_id, first_no],
        )
        conn.execute(
            "DELETE FROM metric_chunks WHERE series_id = ? AND chunk_no >= ?",
            [series_id, first_no],
        )
        steps = np.concatenate([old.step.astype(_LE_I8, copy=False), steps])
        walls = np.concatenate([old.wall, walls])
        values = np.concatenate([old.value, values])
    else:
        row = conn.execute(
            "SELECT MAX(chunk_no) FROM metric_chunks WHERE series_id = ?", [series_id]
        ).fetchone()
        first_no = 0 if row[0] is None else int(row[0]) + 1
    steps = np.ascontiguousarray(steps, dtype=_LE_I8)
    walls = np.ascontiguousarray(walls, dtype=_LE_F8)
    values = np.ascontiguousarray(values, dtype=_LE_F8)
    conn.executemany(
        "INSERT INTO metric_chunks (series_id, chunk_no, n, steps, walls, vals) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                series_id,
                first_no + number,
                len(values[k : k + CHUNK_POINTS]),
                steps[k : k + CHUNK_POINTS].tobytes(),
                walls[k : k + CHUNK_POINTS].tobytes(),
                values[k : k + CHUNK_POINTS].tobytes(),
            )
            for number, k in enumerate(range(0, len(values), CHUNK_POINTS))
        ],
    )


def read(conn: sqlite3.Connection, series_id: int) -> PointsArrays:
    """Every point of series ``series_id``, in arrival order."""
    return _read_rows(conn, "WHERE series_id = ? ORDER BY chunk_no", [series_id], public=True)


def read_since(conn: sqlite3.Connection, series_id: int, start: int) -> PointsArrays:
    """Points ``start`` onwards of series ``series_id``, in arrival order.

    Points are only ever appended, so a live view that holds the first ``start`` points
    reads just the new ones: the rows before the one holding point ``start`` are skipped
    by their sizes alone, without reading their blobs.
    """
    if start <= 0:
        return read(conn, series_id)
    sizes = conn.execute(
        "SELECT chunk_no, n FROM metric_chunks WHERE series_id = ? ORDER BY chunk_no",
        [series_id],
    ).fetchall()
    before = 0
    for chunk_no, n in sizes:
        if before + int(n) > start:
            rows = _read_rows(conn, "WHERE series_id = ? AND chunk_no >= ? ORDER BY chunk_no",
                              [series_id, int(chunk_no)], public=True)
            skip = start - before
            return PointsArrays(rows.step[skip:], rows.wall[skip:], rows.value[skip:])
        before += int(n)
    return empty_points()


def delete(conn: sqlite3.Connection, series_id: int) -> None:
    conn.execute("DELETE FROM metric_chunks WHERE series_id = ?", [series_id])


def _merge_start(tail_sizes: list[int], new: int) -> int:
    """Index into the tail of the first row to rewrite together with ``new`` points.

    Simulates merging the last two rows while the earlier one is under twice the later
    one's size; once the sum reaches a full chunk everything in the tail merges (the
    result is cut into full chunks plus one remainder, keeping full rows first).
    """
    sizes = [*tail_sizes, new]
    start = len(sizes) - 1
    acc = new
    while start > 0:
        previous = sizes[start - 1]
        if acc >= CHUNK_POINTS or previous < 2 * acc:
            acc += previous
            start -= 1
        else:
            break
    return start


def _read_rows(
    conn: sqlite3.Connection, where: str, args: list[object], *, public: bool = False
) -> PointsArrays:
    rows = conn.execute(
        f"SELECT steps, walls, vals FROM metric_chunks {where}",  # noqa: S608 - fixed clauses
        args,
    ).fetchall()
    if not rows:
        return empty_points()
    steps = np.concatenate([np.frombuffer(r[0], dtype=_LE_I8) for r in rows])
    walls = np.concatenate([np.frombuffer(r[1], dtype=_LE_F8) for r in rows])
    values = np.concatenate([np.frombuffer(r[2], dtype=_LE_F8) for r in rows])
    step: np.ndarray = steps.astype(np.int64, copy=False)
    if public:
        missing = step == NO_STEP
        if missing.any():
            step = step.astype(np.float64)
            step[missing] = np.nan
    return PointsArrays(
        step, walls.astype(np.float64, copy=False), values.astype(np.float64, copy=False)
    )
