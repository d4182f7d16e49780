"""The UI reads and writes the store only through the core's API (``RunsCatalog``,
``RunEdits``, ``RunStore``, …). import-linter forbids importing ``sqlite3`` in ``app.ui``;
this catches what an import check cannot: reaching through a core object to its
connection (``store.db.conn.execute``) or opening a transaction of its own."""

from __future__ import annotations

import re
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "app" / "ui"
RAW_SQL = re.compile(r"\.db\b|\.conn\b|\.execute(many)?\(|\.transaction\(|\bsqlite")


def test_no_ui_module_touches_the_store_s_connection() -> None:
    found = [f"{path.relative_to(UI.parent.parent)}:{n}: {line.strip()}"
             for path in sorted(UI.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if RAW_SQL.search(line)]
    assert not found, "SQL belongs in app/core; move these into a core API:\n" + "\n".join(found)


def test_the_scan_finds_a_connection_used_in_the_ui() -> None:
    assert RAW_SQL.search("    with store.lock: store.db.conn.execute('SELECT 1')")
    assert RAW_SQL.search("with self.ctx.store.transaction() as db:")
    assert not RAW_SQL.search("self.edits.set_note(ids, note)")
