"""What a user can do to the selected runs: the actions, their shortcuts, the context
menu, the "Runs" menu, and undo for the edits that only touch Labdeck's records.

Shortcuts (active while the Runs page has focus):

====================  ====================================================================
Enter / double-click  open: one run → its window, several → compare
Ctrl+K                cancel (a queued run ends now, a running one is stopped)
Ctrl+R                re-queue finished runs (a new attempt)
Ctrl+D                clone and edit: the submit dialog, pre-filled with the run's spec
Alt+Up / Alt+Down     move queued runs up / down the queue (sort by State to see it)
Ctrl+T / F2           tags / note
Ctrl+Shift+A          archive (or unarchive): hidden unless "Archived" is ticked
Delete                delete finished runs from the list (undo with Ctrl+Z)
Ctrl+Shift+C          copy the ``ssh`` command that opens a shell in the run's folder
Ctrl+Z / Ctrl+Shift+Z undo / redo tags, note, archive and delete
====================  ====================================================================

Cancel, re-queue and moves act on the world (the dispatcher carries them out), so they
have no undo. Every store write runs on one writer thread, in order, never the GUI thread.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMenu, QMenuBar

from app.core.queue.runs import RunState
from app.core.queue.runstore import ACTIVE
from app.core.run_edits import RunEdits
from app.core.runs_catalog import RunRow
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from ssh_backend.hostspec import HostSpec
from ssh_backend.session import RUNS_DIR

if TYPE_CHECKING:
    from app.ui.runs.page import RunsPage

SubmitDialog = Callable[[dict[str, Any]], Any]


def ssh_command(spec: HostSpec, run_dir_id: str) -> str:
    """A shell line that opens a login shell in the run's folder on its host."""
    remote = f'cd ~/{RUNS_DIR}/{shlex.quote(run_dir_id)} && exec "$SHELL" -l'
    if spec.local:
        return remote
    argv = ["ssh", "-t"]
    if spec.port and spec.port != 22:
        argv += ["-p", str(spec.port)]
    if spec.proxy_jump:
        argv += ["-J", ",".join(spec.proxy_jump)]
    if spec.key_filename:
        argv += ["-i", spec.key_filename]
    target = spec.ssh_alias or spec.hostname or spec.name
    argv += [f"{spec.user}@{target}" if spec.user else target, remote]
    return " ".join(shlex.quote(arg) for arg in argv)


class _StoreCommand(QUndoCommand):
    """An undoable edit: ``do`` returns what ``undo`` needs, both run on the writer."""

    def __init__(self, actions: RunsActions, text: str, ids: list[str],
                 do: Callable[[], Any], undo: Callable[[Any], None]) -> None:
        super().__init__(text)
        self._actions, self._ids, self._do, self._undo = actions, ids, do, undo
        self._saved: Any = None

    def redo(self) -> None:
        def work() -> None:
            self._saved = self._do()
        self._actions.write(work, self._ids)

    def undo(self) -> None:
        self._actions.write(lambda: self._undo(self._saved), self._ids)


class RunsActions(QObject):
    def __init__(self, page: RunsPage, ctx: AppContext,
                 submit_dialog: SubmitDialog | None = None) -> None:
        super().__init__(page)
        self.page, self.ctx, self.submit_dialog = page, ctx, submit_dialog
        self.writer = DataWorker("labdeck-runs-write", self)
        self.edits = RunEdits(ctx.store)
        self.undo_stack = QUndoStack(self)
        self.last_dialog: QInputDialog | None = None
        self._serial = itertools.count()
        page._on_stop.append(self.writer.stop)

        def make(text: str, keys: str | QKeySequence.StandardKey | None,
                 slot: Callable[[], None]) -> QAction:
            action = QAction(text, page)
            if keys is not None:
                action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(slot)
            page.addAction(action)
            return action

        self.open = make("Open", None, lambda: self._emit_open())
        self.open.setShortcut(QKeySequence("Return"))  # shown in menus; the view handles it
        page.removeAction(self.open)
        self.cancel = make("Cancel", "Ctrl+K", lambda: self.cancel_runs(self._ids()))
        self.requeue = make("Re-queue", "Ctrl+R", lambda: self.requeue_runs(self._ids()))
        self.clone = make("Clone and edit…", "Ctrl+D", self.clone_selected)
        self.move_up = make("Move up in queue", "Alt+Up", lambda: self.move_runs(self._ids(), -1))
        self.move_down = make("Move down in queue", "Alt+Down",
                              lambda: self.move_runs(self._ids(), 1))
        self.tag = make("Tags…", "Ctrl+T", self.ask_tags)
        self.note = make("Note…", "F2", self.ask_note)
        self.archive = make("Archive", "Ctrl+Shift+A", self.toggle_archive)
        self.delete = make("Delete", QKeySequence.StandardKey.Delete,
                           lambda: self.delete_runs(self._ids()))
        self.copy_ssh = make("Copy ssh command to the run's folder", "Ctrl+Shift+C",
                             self.copy_ssh_command)
        self.undo = self.undo_stack.createUndoAction(page, "Undo")
        self.redo = self.undo_stack.createRedoAction(page, "Redo")
        for action, keys in ((self.undo, QKeySequence.StandardKey.Undo),
                             (self.redo, QKeySequence.StandardKey.Redo)):
            action.setShortcut(keys)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            page.addAction(action)
        self.focus_filter = make("Filter runs", QKeySequence.StandardKey.Find,
                                 lambda: page.filter_edit.setFocus())

        page.view.customContextMenuRequested.connect(self._context_menu)
        page.view.selectionModel().selectionChanged.connect(self.update_enabled)
        page.model.rows_loaded.connect(self.update_enabled)
        page.model.dataChanged.connect(self.update_enabled)
        self.update_enabled()

    # -- menus ---------------------------------------------------------------------------
    def _menu_actions(self) -> list[QAction | None]:
        return [self.open, None, self.cancel, self.requeue, self.clone, self.move_up,
                self.move_down, None, self.tag, self.note, self.archive, self.delete, None,
                self.copy_ssh, None, self.undo, self.redo]

    def fill_menu(self, menu: QMenu) -> QMenu:
        for action in self._menu_actions():
            if action is None:
                menu.addSeparator()
            else:
                menu.addAction(action)
        return menu

    def install_menu(self, bar: QMenuBar) -> QMenu:
        """A "Runs" menu, before Help when there is one."""
        menu = self.fill_menu(QMenu("&Runs", bar))
        help_action = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"),
                           None)
        if help_action is not None:
            bar.insertMenu(help_action, menu)
        else:
            bar.addMenu(menu)
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        self.update_enabled()
        menu = self.fill_menu(QMenu(self.page))
        menu.popup(self.page.view.viewport().mapToGlobal(pos))

    # -- selection -----------------------------------------------------------------------
    def _ids(self) -> list[str]:
        return self.page.selected_run_ids()

    def _rows(self) -> list[RunRow]:
        model = self.page.model
        return [row for row in (model.run_row(i) for i in self._ids()) if row is not None]

    def update_enabled(self, *_: Any) -> None:
        ids, rows = self._ids(), self._rows()
        states = {row.state for row in rows}
        self.open.setEnabled(bool(ids))
        self.cancel.setEnabled(any(r.state is RunState.QUEUED or (
            r.state in ACTIVE and not r.cancel_requested) for r in rows))
        self.requeue.setEnabled(any(s.finished for s in states))
        self.clone.setEnabled(len(rows) == 1 and self.submit_dialog is not None)
        self.move_up.setEnabled(RunState.QUEUED in states)
        self.move_down.setEnabled(RunState.QUEUED in states)
        for action in (self.tag, self.note, self.archive):
            action.setEnabled(bool(ids))
        self.archive.setText("Unarchive" if rows and all(r.archived for r in rows)
                             else "Archive")
        self.delete.setEnabled(any(s.finished for s in states))
        self.copy_ssh.setEnabled(len(rows) == 1 and bool(rows[0].host))

    def _emit_open(self) -> None:
        ids = self._ids()
        if ids:
            self.page.open_runs_requested.emit(ids)

    # -- the writer ----------------------------------------------------------------------
    def write(self, fn: Callable[[], Any], ids: list[str], message: str = "",
              done: Callable[[Any], None] | None = None, wake: bool = False) -> None:
        """Run ``fn`` on the writer thread; then refresh ``ids`` and say ``message``."""
        def finished(value: Any) -> None:
            self.page.model.notify_runs_changed(ids)
            if wake:
                self.ctx.wake_dispatcher()
            if done is not None:
                done(value)
            elif message:
                self.page.show_message(message)

        self.writer.submit(f"write-{next(self._serial)}", fn, finished,
                           lambda exc: self.page.show_message(f"{exc}"))

    # -- actions on the world ------------------------------------------------------------
    def cancel_runs(self, ids: list[str]) -> None:
        runstore = self.ctx.runstore

        def work() -> int:
            count = 0
            for run_id in ids:
                run = runstore.get(run_id)
                if run is not None and (run.state is RunState.QUEUED or (
                        run.state in ACTIVE and not run.cancel_requested)):
                    runstore.request_cancel(run_id)
                    count += 1
            return count

        self.write(work, ids, wake=True, done=lambda n: self.page.show_message(
            f"Cancelling {n} run{'s' if n != 1 else ''}" if n else "Nothing to cancel: "
            "the selected runs have already ended"))

    def requeue_runs(self, ids: list[str]) -> None:
        runstore = self.ctx.runstore

        def work() -> int:
            runs = [runstore.get(run_id) for run_id in ids]
            done = [r for r in runs if r is not None and r.state.finished]
            for run in done:
                runstore.retry(run.id)
            return len(done)

        self.write(work, ids, wake=True, done=lambda n: self.page.show_message(
            f"Queued {n} run{'s' if n != 1 else ''} again" if n else
            "Only finished runs can be re-queued"))

    def move_runs(self, ids: list[str], delta: int) -> None:
        runstore = self.ctx.runstore

        def work() -> int:
            runs = [r for r in (runstore.get(i) for i in ids)
                    if r is not None and r.state is RunState.QUEUED]
            # Moving up, the front one goes first, so the group keeps its order.
            runs.sort(key=lambda r: (-r.priority, r.seq), reverse=delta > 0)
            return sum(abs(runstore.move(run.id, delta)) for run in runs)

        way = "up" if delta < 0 else "down"
        hint = "" if self.page.model.query().sort.kind == "state" else (
            " (sort by State to see the queue order)")
        end = "front" if delta < 0 else "end"
        self.write(work, ids, wake=True, done=lambda n: self.page.show_message(
            f"Moved {way} the queue{hint}" if n else
            f"Already at the {end} of the queue (a move never crosses a priority)"))

    def clone_selected(self) -> None:
        rows = self._rows()
        if len(rows) != 1 or self.submit_dialog is None:
            return
        spec = dict(rows[0].spec)
        spec["tags"] = list(rows[0].tags)
        self.submit_dialog(spec)

    def copy_ssh_command(self) -> None:
        rows = self._rows()
        if len(rows) != 1 or not rows[0].host:
            return
        row, store = rows[0], self.ctx.store

        def shown(spec: HostSpec | None) -> None:
            if spec is None:
                self.page.show_message(f"Host {row.host} is no longer known to Labdeck")
                return
            command = ssh_command(spec, row.host_run_id)
            QGuiApplication.clipboard().setText(command)
            self.page.show_message(f"Copied: {command}")

        self.writer.submit(f"host-{next(self._serial)}", lambda: store.host(row.host or ""),
                           shown, lambda exc: self.page.show_message(str(exc)))

    # -- undoable edits ------------------------------------------------------------------
    def set_tags(self, ids: list[str], tags: list[str], replace: list[str] | None = None) -> None:
        """Give each run ``tags``; ``replace`` (default: none) are removed first."""
        edits = self.edits
        self.undo_stack.push(_StoreCommand(
            self, "tags", ids, lambda: edits.set_tags(ids, tags, replace or ()),
            lambda before: edits.restore_tags(before or {})))

    def set_note(self, ids: list[str], note: str) -> None:
        edits = self.edits
        self.undo_stack.push(_StoreCommand(
            self, "note", ids, lambda: edits.set_note(ids, note),
            lambda before: edits.restore_notes(before or {})))

    def set_archived(self, ids: list[str], archived: bool) -> None:
        edits = self.edits
        self.undo_stack.push(_StoreCommand(
            self, "archive" if archived else "unarchive", ids,
            lambda: edits.set_archived(ids, archived),
            lambda _: edits.set_archived(ids, not archived)))
        n = len(ids)
        self.page.show_message(f"{'Archived' if archived else 'Unarchived'} {n} run"
                               f"{'s' if n != 1 else ''} (Ctrl+Z to undo)")

    def delete_runs(self, ids: list[str]) -> None:
        """Delete the finished ones among ``ids`` from the list (undo puts them back)."""
        edits, model = self.edits, self.page.model
        finished = [i for i in ids if (r := model.run_row(i)) is None or r.state.finished]
        kept = len(ids) - len(finished)
        if not finished:
            self.page.show_message("Only finished runs can be deleted: cancel them first")
            return
        self.undo_stack.push(_StoreCommand(
            self, "delete", finished, lambda: edits.delete_finished(finished),
            lambda taken: edits.restore_deleted(taken or [])))
        extra = f"; {kept} still active kept (cancel them first)" if kept else ""
        self.page.show_message(f"Deleted {len(finished)} run{'s' if len(finished) != 1 else ''}"
                               f" (Ctrl+Z to undo){extra}")

    def toggle_archive(self) -> None:
        rows = self._rows()
        ids = self._ids()
        if ids:
            self.set_archived(ids, not (rows and all(r.archived for r in rows)))

    # -- dialogs (non-modal: the window stays live) --------------------------------------
    def _dialog(self, title: str, label: str, text: str, multiline: bool,
                accepted: Callable[[str], None]) -> QInputDialog:
        dialog = QInputDialog(self.page)
        dialog.setWindowTitle(title)
        dialog.setLabelText(label)
        if multiline:
            dialog.setOption(QInputDialog.InputDialogOption.UsePlainTextEditForTextInput)
        dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
        dialog.setTextValue(text)
        dialog.textValueSelected.connect(accepted)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.last_dialog = dialog
        dialog.open()
        return dialog

    def ask_tags(self) -> None:
        ids, rows = self._ids(), self._rows()
        if not ids:
            return
        common = sorted(set.intersection(*(set(r.tags) for r in rows))) if rows else []
        self._dialog("Tags", f"Tags of {len(ids)} run{'s' if len(ids) != 1 else ''}, "
                     "separated by commas:", ", ".join(common), False,
                     lambda text: self.set_tags(ids, _split_tags(text), replace=common))

    def ask_note(self) -> None:
        ids, rows = self._ids(), self._rows()
        if not ids:
            return
        self._dialog("Note", f"Note for {len(ids)} run{'s' if len(ids) != 1 else ''}:",
                     rows[0].note if rows else "", True,
                     lambda text: self.set_note(ids, text.strip()))


def _split_tags(text: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in text.replace(";", ",").split(",") if t.strip()))
