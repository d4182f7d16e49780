"""The comparison's parameter table: a row per run (marked with its colour), a column per
parameter; by default only the parameters whose values differ between the runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
)

from app.ui.common.plain_text import action_text, display_text, tooltip_text
from app.ui.compare.legend import swatch

MISSING = "–"


@dataclass(frozen=True, slots=True)
class ParamRun:
    run_id: str
    label: str
    color: QColor
    params: Mapping[str, str]  # flattened name → value as shown


def differing(params: Sequence[Mapping[str, str]]) -> list[str]:
    """Names whose value is not the same in every run (absent in some counts as different)."""
    names = sorted({name for p in params for name in p})
    return [n for n in names if len({p.get(n, MISSING) for p in params}) > 1 or
            any(n not in p for p in params)]


class ParamTable(QTableWidget):
    remove_requested = Signal(list)  # run ids, from a row's context menu

    def __init__(self) -> None:
        super().__init__(0, 0)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setMinimumSectionSize(80)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._on_context_menu)
        self._runs: list[ParamRun] = []
        self._names: list[str] = []
        self._shown: object = None
        self.show_all = False
        self.total = 0  # parameters across the runs
        self.differ = 0  # of which differ

    def set_runs(self, runs: Sequence[ParamRun], show_all: bool | None = None) -> None:
        """The runs (one row each, in this order) and their parameters."""
        if show_all is not None:
            self.show_all = show_all
        shown = (self.show_all, [(r.run_id, r.label, r.color.name(), sorted(r.params.items()))
                                 for r in runs])
        if shown == self._shown:
            return  # live runs re-read this every second: keep the scroll and column widths
        self._shown = shown
        self._runs = list(runs)
        params = [c.params for c in self._runs]
        every = sorted({name for p in params for name in p})
        diff = set(differing(params)) if len(params) > 1 else set()
        # One run differs from nothing: then its parameters are simply listed.
        listed = self.show_all or len(params) < 2
        self._names = every if listed else [n for n in every if n in diff]
        self.total, self.differ = len(every), len(diff)
        self.setRowCount(len(self._runs))
        self.setColumnCount(1 + len(self._names))
        self.setHorizontalHeaderItem(0, QTableWidgetItem("Run"))
        bold = QFont(self.font())
        bold.setBold(True)
        for c, name in enumerate(self._names, start=1):
            head = QTableWidgetItem(display_text(name))
            head.setToolTip(tooltip_text(name))
            if self.show_all and name in diff:
                head.setFont(bold)  # with every parameter shown, the differing ones stand out
            self.setHorizontalHeaderItem(c, head)
        for r, run in enumerate(self._runs):
            head = QTableWidgetItem(swatch(run.color), display_text(run.label))
            head.setToolTip(tooltip_text(f"{run.label} ({run.run_id}); right-click to remove it"))
            self.setItem(r, 0, head)
            for c, name in enumerate(self._names, start=1):
                text = run.params.get(name, MISSING)
                item = QTableWidgetItem(display_text(text))
                item.setToolTip(tooltip_text(f"{run.label}: {name} = {text}"))
                self.setItem(r, c, item)
        self.resizeColumnsToContents()

    def set_show_all(self, show_all: bool) -> None:
        self.set_runs(self._runs, show_all)

    def param_names(self) -> list[str]:
        """The parameters listed (column headers after "Run")."""
        return list(self._names)

    def value(self, name: str, run_id: str) -> str | None:
        row = next((i for i, c in enumerate(self._runs) if c.run_id == run_id), None)
        col = self._names.index(name) + 1 if name in self._names else None
        return None if col is None or row is None else self._text(row, col)

    def run_ids(self) -> list[str]:
        return [c.run_id for c in self._runs]

    def summary(self) -> str:
        runs = len(self._runs)
        if runs < 2:
            return f"{self.total} parameters" + (" (add runs to compare)" if runs else "")
        if not self.differ:
            return f"All {self.total} parameters are the same in these {runs} runs"
        return f"{self.differ} of {self.total} parameters differ"

    def _text(self, row: int, col: int) -> str:
        item = self.item(row, col)
        return item.text() if item is not None else ""

    def _on_context_menu(self, pos: QPoint) -> None:
        menu = self.context_menu(self.rowAt(pos.y()))
        if menu is not None:
            menu.exec(self.viewport().mapToGlobal(pos))

    def context_menu(self, row: int) -> QMenu | None:
        """The menu of a run's row: "Remove" takes the run out of the comparison."""
        if not 0 <= row < len(self._runs):
            return None
        run = self._runs[row]
        menu = QMenu(self)
        menu.addAction(action_text(f"Remove “{run.label}” from the comparison"),
                       lambda: self.remove_requested.emit([run.run_id]))
        return menu
