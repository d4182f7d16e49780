"""The submit dialog: what was dropped (or is being cloned), pre-filled, checked as the user
types, with a live count of the runs it queues; Enter queues them.

One dialog for any drop. A single script, folder or cloned run is fully editable: name,
command, parameters (a value list is a sweep). A job file, or several dropped files, are
listed one run per line (a job file's sweep as its runs); their shared settings (host,
GPUs, environment, …) can be changed for all of them at once, and what the user does not
change stays as each file says. Reading files and the store, and queueing, happen on a
worker thread; nothing is queued while anything is wrong.
"""

from __future__ import annotations

import getpass
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMainWindow,
    QScrollArea,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.jobs.feasibility import HostFacts
from app.core.jobs.jobspec import JobSpec
from app.core.jobs.snapshot import read_snapshot
from app.ui.common.context import AppContext
from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import PlainLabel, display_text, html_text, rich_label, tooltip_text
from app.ui.submit.form import Built, build, describe_ids, edited_specs
from app.ui.submit.items import SubmitItem, folder_item, known_hosts, load_items
from app.ui.submit.settings import SharedSettings
from app.ui.submit.sweep_editor import ParamTable

PREVIEW_ROWS = 500
STYLE = """
*[invalid="true"] { border: 1px solid #c62828; border-radius: 3px; }
QLabel#problems { color: #c62828; }
QLabel#count { font-weight: bold; }
QLabel#hint { color: palette(placeholder-text); margin-top: 12px; }
"""


class SubmitDialog(QDialog):
    loaded = Signal()  # the dropped things are read and the form is filled
    queued = Signal(list)  # run ids, after the store has them

    def __init__(self, ctx: AppContext, spec: Mapping[str, Any] | None = None, *,
                 paths: Sequence[Path] = (), pin_host: str | None = None,
                 pin_gpus: Sequence[int] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SubmitDialog")
        self.setStyleSheet(STYLE)
        self.setWindowTitle("Queue runs")
        self._ctx = ctx
        self._pin = (pin_host, tuple(pin_gpus)) if pin_host else None
        self._monitor = ctx.monitor or getattr(parent.window() if parent else None,
                                               "monitor", None)
        self.items: list[SubmitItem] = []
        self.hosts: list[str] = []
        self.facts: dict[str, HostFacts] = {}
        self.result_ids: list[str] = []
        self.built = Built()
        self._queueing = False
        self._worker = DataWorker("labdeck-submit", self)

        self._add_source()
        left = self._form()
        self._add_tabs()
        body = QHBoxLayout()
        body.addWidget(left, 2)
        body.addWidget(self.tabs, 3)

        bottom = self._bottom()

        outer = QVBoxLayout(self)
        outer.addWidget(self.source_label)
        outer.addWidget(self.entry_row)
        outer.addLayout(body, 1)
        outer.addWidget(self.problems_area)
        outer.addLayout(bottom)
        self.resize(900, 640)
        for widget in self._markable():  # restored when a problem is fixed
            widget.setProperty("plainTip", widget.toolTip())

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(60)
        self._timer.timeout.connect(self.revalidate)
        for signal in (self.name_edit.textChanged, self.command_edit.textChanged,
                       self.params.changed, self.settings.changed):
            signal.connect(self._timer.start)

        paths = [Path(p) for p in paths]
        store, monitor = ctx.store, self._monitor

        def load() -> tuple[list[str], dict[str, HostFacts], list[SubmitItem]]:
            names, facts = known_hosts(store, monitor)
            return names, facts, load_items(paths, spec, names, facts)

        self._worker.submit("load", load, self._on_loaded, self._on_load_failed)

    def _add_source(self) -> None:
        """What was dropped, and the entry script of a folder."""
        # Rich on purpose (bold names): every name and path in it goes through html_text.
        self.source_label = rich_label("Reading what was dropped…")
        self.source_label.setWordWrap(True)
        self.entry_combo = QComboBox()
        self.entry_combo.setToolTip("The script that runs; the whole folder is uploaded")
        self.entry_combo.currentTextChanged.connect(self._on_entry_changed)
        self.entry_row = QWidget()
        entry_layout = QHBoxLayout(self.entry_row)
        entry_layout.setContentsMargins(0, 0, 0, 0)
        entry_layout.addWidget(PlainLabel("Entry script"))
        entry_layout.addWidget(self.entry_combo, 1)
        self.entry_row.setVisible(False)

    def _form(self) -> QWidget:
        """Name, command and where the runs may go."""
        self.name_edit = QLineEdit()
        self.command_edit = QLineEdit()
        self.command_edit.setToolTip("The program and its fixed arguments, split like a "
                                     "shell would (not run by one); parameters are added")
        self.settings = SharedSettings(self)
        left = QWidget()
        form = QFormLayout(left)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Name", self.name_edit)
        form.addRow("Command", self.command_edit)
        for label, widget in self.settings.placement_rows:
            form.addRow(label, widget)
        hint = PlainLabel("Enter queues the runs. Each starts as soon as a host has the GPUs "
                          "it asks for free; nothing is sent to a host before that.")
        hint.setWordWrap(True)
        hint.setObjectName("hint")
        form.addRow(hint)
        left.setMinimumWidth(340)
        return left

    def _add_tabs(self) -> None:
        """Parameters (and sweeps), environment, and the runs it would queue."""
        self.params = ParamTable()
        self.params_note = PlainLabel()
        self.params_note.setWordWrap(True)
        params_page = QWidget()
        params_layout = QVBoxLayout(params_page)
        params_layout.addWidget(self.params_note)
        params_layout.addWidget(self.params, 1)
        env_page = QWidget()
        env_form = QFormLayout(env_page)
        for label, widget in self.settings.environment_rows:
            env_form.addRow(label, widget)
        self.runs_view = QTreeWidget()
        self.runs_view.setHeaderLabels(["Run", "Command"])
        self.runs_view.setRootIsDecorated(False)
        self.runs_view.setAlternatingRowColors(True)
        self.runs_view.setColumnWidth(0, 220)
        self.tabs = QTabWidget()
        self.tabs.addTab(params_page, "Parameters")
        self.tabs.addTab(env_page, "Environment")
        self.tabs.addTab(self.runs_view, "Runs")

    def _bottom(self) -> QHBoxLayout:
        """Problems, the count of runs and the buttons."""
        self.problems_label = PlainLabel()
        self.problems_label.setObjectName("problems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems_area = QScrollArea()
        self.problems_area.setWidgetResizable(True)
        self.problems_area.setWidget(self.problems_label)
        self.problems_area.setMaximumHeight(96)
        self.problems_area.setVisible(False)
        self.count_label = PlainLabel()
        self.count_label.setObjectName("count")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setDefault(True)
        self.ok_button.setEnabled(False)
        self.ok_button.setMinimumWidth(130)
        self.buttons.accepted.connect(self.queue)
        self.buttons.rejected.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(self.buttons)
        return bottom

    # -- filling ---------------------------------------------------------------------
    def _on_loaded(self, result: tuple[list[str], dict[str, HostFacts],
                                       list[SubmitItem]]) -> None:
        self.hosts, self.facts, self.items = result
        self.settings.set_hosts(self.hosts)
        first = next((i.base for i in self.items if i.base is not None), None)
        # Nothing readable (a broken job file): show the defaults, and nothing to edit.
        self.settings.fill(first if first is not None else JobSpec(name=""))
        for _label, widget in (*self.settings.placement_rows,
                               *self.settings.environment_rows):
            widget.setEnabled(first is not None)
        if self._pin is not None:
            self.settings.pin(*self._pin)
        self._fill_item()
        self.revalidate()
        self.name_edit.setFocus()
        self.loaded.emit()

    def _on_load_failed(self, exc: BaseException) -> None:
        self.source_label.setText(html_text(f"Could not read what was dropped: {exc}"))
        self.loaded.emit()

    def editable_item(self) -> SubmitItem | None:
        """The item the name, command and parameter table edit (only when there is one)."""
        if len(self.items) == 1 and self.items[0].editable:
            return self.items[0]
        return None

    def _fill_item(self) -> None:
        item = self.editable_item()
        self.source_label.setText(self._source_text())
        self.name_edit.setEnabled(item is not None)
        self.command_edit.setEnabled(item is not None)
        self.params.setEnabled(item is not None)
        self.entry_row.setVisible(item is not None and bool(item.entries))
        if item is None or item.base is None:
            what = "each file" if len(self.items) > 1 else "the job file"
            self.name_edit.setText(f"(as {what} says)")
            self.command_edit.setText(f"(as {what} says)")
            self.params.set_params([], {})
            self.params_note.setText(f"Parameters come from {what}; its runs are listed "
                                     "under Runs. Settings changed here apply to all of them.")
            self.tabs.setCurrentWidget(self.runs_view)
            return
        self.entry_combo.blockSignals(True)
        self.entry_combo.clear()
        self.entry_combo.addItems(item.entries)
        if item.entry:
            self.entry_combo.setCurrentText(item.entry)
        self.entry_combo.blockSignals(False)
        base = item.base
        self.name_edit.setText(base.name)
        self.command_edit.setText(base.shell if base.shell is not None
                                  else shlex.join(base.argv))
        self.params.set_params(item.args, item.values)
        found = len(item.args)
        self.params_note.setText(
            (f"{found} option{'s' if found != 1 else ''} found in the script's argparse "
             "calls. " if found else "")
            + "Edit a value to change it; type several values separated by commas "
            "(1e-3, 3e-4) to sweep: one run per combination.")

    def _source_text(self) -> str:
        if not self.items:
            return "Nothing to queue."
        if len(self.items) > 1:
            names = ", ".join(f"<b>{html_text(i.label)}</b>" for i in self.items)
            text = (f"{len(self.items)} files: {names}. One run per script or folder, and "
                    "each job file's own runs; settings changed here apply to all of them.")
        else:
            item = self.items[0]
            where = f" — <code>{html_text(item.path)}</code>" if item.path is not None else ""
            kind = {"script": "Script", "folder": "Folder, uploaded whole",
                    "jobfile": "Job file", "spec": "Clone of run"}.get(item.kind, "File")
            text = f"{kind}: <b>{html_text(item.label)}</b>{where}"
        if self._pin is not None:
            host, gpus = self._pin
            gpu_text = f", GPU {', '.join(map(str, gpus))}" if gpus else ""
            text += f"<br>Pinned to <b>{html_text(host)}{gpu_text}</b> (dropped there)."
        return text

    def _on_entry_changed(self, entry: str) -> None:
        item = self.editable_item()
        if item is None or item.path is None or not entry:
            return
        folder = item.path
        self._worker.submit("entry", lambda: folder_item(folder, entry), self._on_entry_read)

    def _on_entry_read(self, item: SubmitItem) -> None:
        self.items = [item]
        self._fill_item()
        self.revalidate()

    # -- checking --------------------------------------------------------------------
    def revalidate(self) -> None:
        """Build the runs from the form as it is now; show the count and the problems."""
        self._timer.stop()
        if not self.items:
            return
        item = self.editable_item()
        edited = None
        if item is not None and item.base is not None:
            edited = edited_specs(item.base, self.name_edit.text(), self.command_edit.text(),
                                  self.params.rows(), item.args)
        self.built = build(self.items, edited, self.settings.values(), self.hosts,
                           self.facts)
        count = self.built.count
        grid = f"  ({self.built.grid})" if self.built.grid else ""
        self.count_label.setText(f"Queues {count} run{'s' if count != 1 else ''}{grid}")
        self.ok_button.setText(f"Queue {count} run{'s' if count != 1 else ''}"
                               if count else "Queue")
        self.ok_button.setEnabled(bool(self.built.specs) and not self._queueing)
        self._show_problems(self.built.problems)
        self._show_runs(self.built.specs)

    def problems(self) -> list[str]:
        return list(self.built.problems)

    def _show_problems(self, problems: list[str]) -> None:
        self.problems_area.setVisible(bool(problems))
        shown = problems
        for item in self.items:
            if item.path is not None:  # the file's name is enough where the header has it
                shown = [p.replace(f"{item.path}: ", f"{item.label}: ", 1) for p in shown]
        self.problems_label.setText("\n".join(f"• {p}" for p in shown))
        marked: dict[QWidget, list[str]] = {}
        # A job file that could not be read is not shown in the form: its problems name
        # the file and its lines, and no field of the form is to blame.
        unread = tuple(str(i.path) for i in self.items if i.base is None and i.path)
        for problem in problems:
            widget = None if unread and problem.startswith(unread) else \
                self._widget_for(problem)
            if widget is not None:
                marked.setdefault(widget, []).append(problem)
        for widget in self._markable():
            bad = widget in marked
            if bool(widget.property("invalid")) != bad:
                widget.setProperty("invalid", bad)
                widget.style().unpolish(widget)
                widget.style().polish(widget)
            widget.setToolTip(tooltip_text("\n".join(marked.get(widget, [])) or
                                           str(widget.property("plainTip") or "")))

    def _markable(self) -> list[QWidget]:
        fields = ("hosts", "gpus", "pin_gpus", "min_free_mem_mib", "priority", "time_limit",
                  "tags", "conda_env", "venv", "setup", "env")
        widgets = [self.settings.widget_for(f) for f in fields]
        return [self.name_edit, self.command_edit, self.params.table,
                *(w for w in widgets if w is not None)]

    def _widget_for(self, problem: str) -> QWidget | None:
        direct = {"name": self.name_edit, "command": self.command_edit,
                  "shell": self.command_edit, "params": self.params.table}
        for word in problem.split(": ")[:3]:
            widget = direct.get(word) or self.settings.widget_for(word)
            if widget is not None:
                return widget
        return None

    def _show_runs(self, specs: list[JobSpec]) -> None:
        self.runs_view.clear()
        for spec in specs[:PREVIEW_ROWS]:
            command = spec.shell if spec.shell is not None else shlex.join(spec.argv)
            row = QTreeWidgetItem([display_text(spec.name), display_text(command)])
            row.setToolTip(1, tooltip_text(command))
            self.runs_view.addTopLevelItem(row)
        if len(specs) > PREVIEW_ROWS:
            self.runs_view.addTopLevelItem(QTreeWidgetItem(
                [f"… and {len(specs) - PREVIEW_ROWS} more", ""]))

    # -- queueing --------------------------------------------------------------------
    def queue(self) -> None:
        """Queue the runs (on the worker); the dialog closes once the store has them."""
        self.revalidate()
        specs = list(self.built.specs)
        if not specs or self._queueing:
            return
        self._queueing = True
        self.ok_button.setEnabled(False)
        self.ok_button.setText("Queueing…")
        runstore = self._ctx.runstore

        def write() -> list[str]:
            # A folder too big to upload fails now, not at launch: read it once here.
            for upload in {s.upload for s in specs if s.upload}:
                read_snapshot(upload)
            return runstore.submit([s.to_dict() for s in specs], getpass.getuser())

        self._worker.submit("queue", write, self._on_queued, self._on_queue_failed)

    def _on_queued(self, ids: list[str]) -> None:
        self.result_ids = list(ids)
        self._ctx.wake_dispatcher()
        parent = self.parentWidget()
        window = parent.window() if parent is not None else None
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(describe_ids(ids), 15000)
        self.queued.emit(list(ids))
        self._queueing = False
        super().accept()

    def _on_queue_failed(self, exc: BaseException) -> None:
        self._queueing = False
        self.revalidate()
        self._show_problems([*self.built.problems, f"Nothing was queued: {exc}"])
        self.ok_button.setEnabled(bool(self.built.specs))

    def reject(self) -> None:
        if not self._queueing:  # the store write finishes first; it cannot be taken back
            super().reject()

    def done(self, result: int) -> None:
        self._timer.stop()
        self._worker.stop()
        super().done(result)


def open_submit_dialog(parent: QWidget | None, ctx: AppContext,
                       spec: Mapping[str, Any] | None = None, *, paths: Sequence[Path] = (),
                       pin_host: str | None = None,
                       pin_gpus: Sequence[int] = ()) -> SubmitDialog:
    """Open the dialog (window-modal, not blocking) for dropped ``paths`` or a run's
    ``spec`` (clone and edit), pinned to ``pin_host``/``pin_gpus`` when given."""
    dialog = SubmitDialog(ctx, spec, paths=paths, pin_host=pin_host, pin_gpus=pin_gpus,
                          parent=parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
