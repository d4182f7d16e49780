"""The rows the runs table has read, bounded: least recently read go first (Qt-free).

Holds each run's ``RunRow`` and, once shown, its formatted cell texts; remembers which
blocks of rows the view asked for and has not got yet (the latest few only: blocks
scrolled past meanwhile are not worth reading).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from app.core.runs_catalog import RunRow
from app.ui.runs import format as fmt
from app.ui.runs.format import Column

BLOCK = 128
CACHE_ROWS = 8192
WANTED_BLOCKS = 6  # more than a screenful


class RowCache:
    def __init__(self) -> None:
        self._rows: OrderedDict[str, RunRow] = OrderedDict()
        self._texts: dict[str, list[str]] = {}  # run id → display text of each column
        self._wanted: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._rows

    def get(self, run_id: str) -> RunRow | None:
        return self._rows.get(run_id)

    def ids(self) -> frozenset[str]:
        return frozenset(self._rows)

    def rows(self) -> list[RunRow]:
        return list(self._rows.values())

    def texts(self, row: RunRow, columns: Sequence[Column]) -> list[str]:
        texts = self._texts.get(row.id)
        if texts is None:
            texts = self._texts[row.id] = [fmt.display(row, c) for c in columns]
        return texts

    def forget_texts(self, run_ids: Iterable[str] | None = None) -> None:
        """Format these rows again when next shown (all of them for ``None``)."""
        if run_ids is None:
            self._texts.clear()
        else:
            for run_id in run_ids:
                self._texts.pop(run_id, None)

    def store(self, rows: Iterable[RunRow]) -> list[str]:
        """Keep ``rows`` (an older read never replaces a newer one); returns the ids whose
        contents differ from what was kept (reading a row again is not a change)."""
        changed = []
        for row in rows:
            known = self._rows.get(row.id)
            if known is not None and known.updated_at > row.updated_at:
                continue
            self._rows[row.id] = row
            self._rows.move_to_end(row.id)
            if row != known:
                self._texts.pop(row.id, None)
                changed.append(row.id)
        while len(self._rows) > CACHE_ROWS:
            self._texts.pop(self._rows.popitem(last=False)[0], None)
        return changed

    def set_metrics(self, values: dict[str, dict[str, float]]) -> list[str]:
        changed = []
        for run_id, metrics in values.items():
            row = self._rows.get(run_id)
            if row is not None and row.metrics != metrics:
                row.metrics = metrics
                self._texts.pop(run_id, None)
                changed.append(run_id)
        return changed

    # -- blocks the view asked for ----------------------------------------------------------
    def want(self, block: int) -> None:
        self._wanted.pop(block, None)
        self._wanted[block] = None
        while len(self._wanted) > WANTED_BLOCKS:
            self._wanted.popitem(last=False)

    def has_wants(self) -> bool:
        return bool(self._wanted)

    def clear_wants(self) -> None:
        self._wanted.clear()

    def take_wanted(self, ids: Sequence[str]) -> list[str]:
        """Ids (of the model's ``ids``) to read now: the wanted blocks, latest first, and
        the block after the latest (the next page down is usually next)."""
        blocks = list(reversed(self._wanted))
        self._wanted.clear()
        if blocks:
            blocks.append(blocks[0] + 1)
        out: list[str] = []
        for block in blocks:
            out += [i for i in ids[block * BLOCK:(block + 1) * BLOCK] if i not in self._rows]
        return out
