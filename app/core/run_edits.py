"""The edits a user makes to runs from the runs table that touch only Labdeck's records:
note, tags, archived, and deleting finished runs. Each edit returns what its undo needs,
and each undo puts exactly that back.

Every edit is one write transaction and stamps ``updated_at``, so the table's change
polling (``RunsCatalog.change_token``) sees it. Call them on a worker thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.queue.runs import FINISHED
from app.core.queue.runstore import RunStore
from app.core.runs_catalog import chunks, marks
from app.core.store import Store

# A deleted run's row exactly as it was stored (column → value), for ``restore_deleted``.
StoredRow = dict[str, Any]
_FINISHED = tuple(s.value for s in FINISHED)


@dataclass(frozen=True, slots=True)
class Annotations:
    """What a user wrote on a run, as stored now."""

    tags: tuple[str, ...]
    note: str
    archived: bool


def _clean_tags(tags: Iterable[str]) -> str:
    return json.dumps(list(dict.fromkeys(t.strip() for t in tags if t.strip())))


class RunEdits:
    """Writes the table's edits to the runs of one ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def annotations(self, run_ids: Sequence[str]) -> dict[str, Annotations]:
        """run id → its annotations, for the runs among ``run_ids`` that exist."""
        out: dict[str, Annotations] = {}
        with self._store.lock:
            conn = self._store.db.conn
            for part in chunks(run_ids):
                for run_id, tags, note, archived in conn.execute(
                        "SELECT id, tags, note, archived FROM runs "  # noqa: S608
                        f"WHERE id IN ({marks(part)})", part):
                    out[run_id] = Annotations(tuple(json.loads(tags)), note, bool(archived))
        return out

    def set_tags(self, run_ids: Sequence[str], tags: Sequence[str],
                 replace: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
        """Add ``tags`` to each run, after removing ``replace`` from its tags; returns
        each run's tags before, for ``restore_tags``."""
        dropped = set(replace)
        with self._store.transaction():
            before = {i: a.tags for i, a in self.annotations(run_ids).items()}
            self._write_tags({i: [t for t in old if t not in dropped] + list(tags)
                              for i, old in before.items()})
        return before

    def restore_tags(self, before: Mapping[str, Sequence[str]]) -> None:
        with self._store.transaction():
            self._write_tags(before)

    def set_note(self, run_ids: Sequence[str], note: str) -> dict[str, str]:
        """Give each run ``note``; returns each run's note before, for ``restore_notes``."""
        with self._store.transaction():
            before = {i: a.note for i, a in self.annotations(run_ids).items()}
            self._write_notes(dict.fromkeys(before, note))
        return before

    def restore_notes(self, before: Mapping[str, str]) -> None:
        with self._store.transaction():
            self._write_notes(before)

    def set_archived(self, run_ids: Iterable[str], archived: bool) -> None:
        now = time.time()
        with self._store.transaction() as db:
            db.conn.executemany("UPDATE runs SET archived = ?, updated_at = ? WHERE id = ?",
                                [(int(archived), now, run_id) for run_id in run_ids])

    def delete_finished(self, run_ids: Iterable[str]) -> list[StoredRow]:
        """Delete the finished runs among ``run_ids`` (others are left alone); returns
        their rows exactly as stored, for ``restore_deleted``. Curves and console stay."""
        runstore = RunStore(self._store)
        taken: list[StoredRow] = []
        with self._store.transaction() as db:
            for run_id in run_ids:
                cursor = db.conn.execute("SELECT * FROM runs WHERE id = ?", [run_id])
                names = [d[0] for d in cursor.description]
                row = cursor.fetchone()
                if row is None or row[names.index("state")] not in _FINISHED:
                    continue
                taken.append(dict(zip(names, row, strict=True)))
                runstore.delete(run_id)
        return taken

    def restore_deleted(self, rows: Sequence[StoredRow]) -> None:
        """Put deleted rows back as they were (their ids cannot have been reused)."""
        now = time.time()
        with self._store.transaction() as db:
            for row in rows:
                values = dict(row, updated_at=now)  # a change the table's poll must see
                columns = list(values)  # the runs table's own column names
                db.conn.execute(
                    f"INSERT OR IGNORE INTO runs ({', '.join(columns)}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(columns))})", [values[c] for c in columns])

    def _write_tags(self, tags: Mapping[str, Iterable[str]]) -> None:
        now = time.time()
        with self._store.transaction() as db:
            db.conn.executemany("UPDATE runs SET tags = ?, updated_at = ? WHERE id = ?",
                                [(_clean_tags(t), now, i) for i, t in tags.items()])

    def _write_notes(self, notes: Mapping[str, str]) -> None:
        now = time.time()
        with self._store.transaction() as db:
            db.conn.executemany("UPDATE runs SET note = ?, updated_at = ? WHERE id = ?",
                                [(note, now, i) for i, note in notes.items()])
