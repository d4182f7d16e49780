"""Exactly-once bookkeeping of tailed files: stored offsets and what of a chunk to keep.

For each (run, source) the store keeps where the file resumes (``tail_offsets``). Given
a ``TailChunk`` and that cursor, ``accept`` decides what to store (all of it, a trimmed
tail of console bytes, or nothing) and the cursor after it, following the rules in
``app.core.metrics.metricstore``'s docstring; it records duplicates, gaps and warnings in the
``IngestResult``. The caller holds the store's write transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from app.core.metrics import consolelog
from ssh_backend.protocol import TailChunk

CONSOLE = "output.log"


@dataclass(frozen=True, slots=True)
class Gap:
    """A chunk not stored: ``reason`` is "gap" (start past the offset) or "overlap"."""

    run_id: str
    source: str
    stored_offset: int
    start: int
    end: int
    reason: str


@dataclass(slots=True)
class IngestResult:
    """What one ``MetricStore.ingest`` stored, skipped and could not store."""

    log_runs: set[str] = field(default_factory=set)  # runs whose console grew
    metric_runs: set[str] = field(default_factory=set)  # runs with new points or params
    points: int = 0
    log_bytes: int = 0
    duplicates: int = 0  # re-delivered chunks dropped silently
    gaps: list[Gap] = field(default_factory=list)  # re-watch these runs from offsets()
    warnings: list[tuple[str, str, str]] = field(default_factory=list)  # run, source, text


@dataclass(slots=True)
class Cursor:
    """Where one tailed file resumes, and where its last reset segment began."""

    inode: int
    offset: int
    reset_start: int = -1
    reset_log_pos: int = -1
    dirty: bool = False  # changed by this ingest: save it


def accept(
    conn: sqlite3.Connection, chunk: TailChunk, cursor: Cursor | None, result: IngestResult
) -> tuple[bytes, Cursor] | None:
    """What of ``chunk`` to store and the cursor after it; None when nothing is stored."""
    console = chunk.source == CONSOLE
    if console and len(chunk.data) != chunk.end - chunk.start:
        result.warnings.append((chunk.run_id, chunk.source, (
            f"dropped a malformed chunk: {len(chunk.data)} bytes for "
            f"[{chunk.start}, {chunk.end})")))
        return None
    stored = cursor.offset if cursor is not None else 0
    if chunk.reset and not _repeated_reset(conn, chunk, cursor):
        log_pos = consolelog.size(conn, chunk.run_id) if console else -1
        new = Cursor(chunk.inode, chunk.end, chunk.start, log_pos, dirty=True)
        return (chunk.data if console else b""), new
    if chunk.start > stored:
        result.gaps.append(Gap(chunk.run_id, chunk.source, stored, chunk.start, chunk.end, "gap"))
        return None
    data = chunk.data if console else b""
    if chunk.start < stored:
        if chunk.end <= stored:
            result.duplicates += 1
            return None
        if not console:
            result.gaps.append(
                Gap(chunk.run_id, chunk.source, stored, chunk.start, chunk.end, "overlap"))
            return None
        data = data[stored - chunk.start :]
    if (cursor is not None and cursor.inode and chunk.inode and cursor.inode != chunk.inode
            and not chunk.reset):
        result.warnings.append((chunk.run_id, chunk.source, (
            "the file was replaced without a reset; content before offset "
            f"{stored} of the new file is not in Labdeck")))
    new = Cursor(
        chunk.inode,
        chunk.end,
        cursor.reset_start if cursor is not None else -1,
        cursor.reset_log_pos if cursor is not None else -1,
        dirty=True,
    )
    return data, new


def _repeated_reset(conn: sqlite3.Connection, chunk: TailChunk, cursor: Cursor | None) -> bool:
    """Is this reset chunk one whose segment is already stored (a re-delivery)?"""
    if cursor is None or cursor.reset_start != chunk.start or cursor.inode != chunk.inode:
        return False
    if chunk.source != CONSOLE:
        return True
    overlap = min(chunk.end, cursor.offset) - chunk.start
    if overlap <= 0:
        return True
    pos = cursor.reset_log_pos
    return consolelog.read(conn, chunk.run_id, pos, pos + overlap) == chunk.data[:overlap]


def load_cursor(conn: sqlite3.Connection, run_id: str, source: str) -> Cursor | None:
    row = conn.execute(
        "SELECT inode, offset, reset_start, reset_log_pos FROM tail_offsets "
        "WHERE run_id = ? AND source = ?",
        [run_id, source],
    ).fetchone()
    if row is None:
        return None
    return Cursor(_inode_from_sql(int(row[0])), int(row[1]), int(row[2]), int(row[3]))


# Inodes are unsigned 64-bit (some file systems hand out ones >= 2**63); SQLite's INTEGER
# is signed 64-bit, so they are stored as their two's-complement bit pattern.
_U64 = 1 << 64


def _inode_to_sql(inode: int) -> int:
    return inode - _U64 if inode >= 1 << 63 else inode


def _inode_from_sql(value: int) -> int:
    return value + _U64 if value < 0 else value


def save_cursor(conn: sqlite3.Connection, run_id: str, source: str, c: Cursor) -> None:
    conn.execute(
        "INSERT INTO tail_offsets (run_id, source, inode, offset, reset_start, reset_log_pos) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, source) DO UPDATE SET "
        "inode = excluded.inode, offset = excluded.offset, "
        "reset_start = excluded.reset_start, reset_log_pos = excluded.reset_log_pos",
        [run_id, source, _inode_to_sql(c.inode), c.offset, c.reset_start, c.reset_log_pos],
    )
