"""The submit dialog's two tables: parameters (where a value list makes a sweep) and
environment variables, each with buttons to add and remove rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.jobs.argparams import ScriptArg, format_value
from app.ui.submit.form import ParamRow, parse_cell
from app.ui.submit.items import value_text

SWEEP_TINT = QColor(30, 111, 217, 40)
_FLAG_ROLE = Qt.ItemDataRole.UserRole + 1
VALUE_HELP = ("One value, or several separated by commas (1e-3, 3e-4) to sweep: every "
              "combination of the swept parameters is one run. Quote a text value that "
              "contains commas. Leave it empty to leave the option out.")


def _fixed(text: str, tooltip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if tooltip:
        item.setToolTip(tooltip)
    return item


class _Table(QWidget):
    """A table with Add / Remove buttons under it; ``changed`` after any edit."""

    changed = Signal()

    def __init__(self, headers: Sequence[str], add_text: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(headers))
        self.table.setHorizontalHeaderLabels(list(headers))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.AllEditTriggers)
        self.table.itemChanged.connect(lambda _item: self.changed.emit())
        self.add_button = QPushButton(add_text)
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(self.add_row)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setAutoDefault(False)
        self.remove_button.setToolTip("Remove the selected rows")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def add_row(self) -> int:
        row = self.table.rowCount()
        self.table.insertRow(row)
        for column in range(self.table.columnCount()):
            self.table.setItem(row, column, self._new_cell(column))
        self.table.setCurrentCell(row, 0)
        first = self.table.item(row, 0)
        if first is not None:
            self.table.editItem(first)
        self.changed.emit()
        return row

    def _new_cell(self, column: int) -> QTableWidgetItem:
        return QTableWidgetItem("")

    def remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        if rows:
            self.changed.emit()

    def text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item is not None else ""


class ParamTable(_Table):
    """Parameter | Value | Script default | Help; detected options keep their names."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(("Parameter", "Value", "Script default", "Help"), "Add parameter",
                         parent)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, 130)
        self.table.setColumnWidth(1, 150)
        self.table.setColumnWidth(2, 100)
        self.table.setWordWrap(False)
        self.table.setToolTip(VALUE_HELP)
        self.table.itemChanged.connect(self._on_item_changed)

    def set_params(self, args: Sequence[ScriptArg], values: dict[str, Any]) -> None:
        """The script's options (with ``values`` where given), then any other values."""
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        known = {a.name for a in args}
        for arg in args:
            self._append(arg.name, values.get(arg.name), arg.is_flag, arg.default, arg)
        for name, value in values.items():
            if name not in known:
                self._append(name, value, isinstance(value, bool), None, None)
        self.table.blockSignals(False)
        for row in range(self.table.rowCount()):
            self._tint(row)
        self.changed.emit()

    def _append(self, name: str, value: Any, is_flag: bool, default: Any,
                arg: ScriptArg | None) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        help_text = arg.help if arg is not None else ""
        if arg is not None and arg.choices:
            help_text = (help_text + " " if help_text else "") + \
                "choices: " + ", ".join(format_value(c) for c in arg.choices)
        name_item = _fixed(name, help_text) if arg is not None else QTableWidgetItem(name)
        name_item.setData(_FLAG_ROLE, is_flag)
        self.table.setItem(row, 0, name_item)
        value_item = QTableWidgetItem("" if value is None else value_text(value))
        value_item.setToolTip(VALUE_HELP)
        self.table.setItem(row, 1, value_item)
        shown = "" if default is None or arg is None else value_text(default)
        if arg is not None and arg.type_name:
            shown = f"{shown}  ({arg.type_name})" if shown else f"({arg.type_name})"
        self.table.setItem(row, 2, _fixed(shown))
        self.table.setItem(row, 3, _fixed(help_text, help_text))

    def _new_cell(self, column: int) -> QTableWidgetItem:
        if column >= 2:
            return _fixed("")
        return QTableWidgetItem("")

    def rows(self) -> list[ParamRow]:
        out: list[ParamRow] = []
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            is_flag = bool(item.data(_FLAG_ROLE)) if item is not None else False
            out.append(ParamRow(self.text(row, 0), self.text(row, 1), is_flag))
        return out

    def set_value(self, name: str, text: str) -> None:
        """Type ``text`` into the value cell of parameter ``name`` (as a user would)."""
        for row in range(self.table.rowCount()):
            if self.text(row, 0) == name:
                item = self.table.item(row, 1)
                assert item is not None
                item.setText(text)
                return
        raise KeyError(name)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 1:
            self._tint(item.row())

    def _tint(self, row: int) -> None:
        # A cell that sweeps is tinted and bold, so the grid can be seen at a glance.
        item = self.table.item(row, 1)
        if item is None:
            return
        values, _problem = parse_cell(self.text(row, 0) or "?", item.text())
        sweeping = len(values) > 1
        self.table.blockSignals(True)
        item.setBackground(QBrush(SWEEP_TINT) if sweeping else QBrush())
        font = QFont(item.font())
        font.setBold(sweeping)
        item.setFont(font)
        self.table.blockSignals(False)


class EnvTable(_Table):
    """NAME | value pairs for the run's environment."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(("Variable", "Value"), "Add variable", parent)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, 180)

    def set_pairs(self, env: dict[str, str]) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for name, value in env.items():
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.table.setItem(row, 0, QTableWidgetItem(name))
            self.table.setItem(row, 1, QTableWidgetItem(value))
        self.table.blockSignals(False)

    def pairs(self) -> list[tuple[str, str]]:
        return [(self.text(r, 0), self.text(r, 1)) for r in range(self.table.rowCount())]
