"""The comparison's side lists: the runs (a legend that hides, shows and removes them) and
the metrics (which ones are plotted)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QKeyEvent, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QListWidget,
    QListWidgetItem,
    QMenu,
)

from app.ui.common.plain_text import display_text, tooltip_text

RUN_ROLE = Qt.ItemDataRole.UserRole
SWATCH = QSize(22, 14)


def swatch(color: QColor, filled: bool = True, size: QSize = SWATCH) -> QIcon:
    """A rounded bar of the run's colour; only its outline while the run is hidden."""
    pixmap = QPixmap(size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(color, 1.6))
    painter.setBrush(color if filled else Qt.GlobalColor.transparent)
    painter.drawRoundedRect(QRectF(1.5, 3.5, size.width() - 3, size.height() - 7), 3, 3)
    painter.end()
    return QIcon(pixmap)


def _extending() -> bool:
    """Shift/Ctrl-click extends the selection (for "Remove"); it does not toggle."""
    mods = QApplication.keyboardModifiers()
    return bool(mods & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier))


@dataclass(frozen=True, slots=True)
class LegendEntry:
    run_id: str
    label: str
    detail: str  # "running · gpu-a:0,1"
    color: QColor
    visible: bool = True


class RunLegend(QListWidget):
    """A click on an entry hides or shows that run in every plot (Space does too);
    Delete or the context menu removes runs from the comparison."""

    toggled = Signal(str, bool)  # run id, now visible
    remove_requested = Signal(list)  # run ids
    open_requested = Signal(str)  # run id: "Open run window"

    def __init__(self) -> None:
        super().__init__()
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setIconSize(SWATCH)
        self.setSpacing(1)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._on_context_menu)
        self.itemClicked.connect(self._on_item_clicked)
        self._entries: dict[str, LegendEntry] = {}

    def set_entries(self, entries: Sequence[LegendEntry]) -> None:
        ids = [e.run_id for e in entries]
        if ids != self.run_ids():
            self.clear()
            for entry in entries:
                item = QListWidgetItem()
                item.setData(RUN_ROLE, entry.run_id)
                self.addItem(item)
        self._entries = {e.run_id: e for e in entries}
        for row, entry in enumerate(entries):
            self._show(self.item(row), entry)

    def run_ids(self) -> list[str]:
        return [str(self.item(r).data(RUN_ROLE)) for r in range(self.count())]

    def item_for(self, run_id: str) -> QListWidgetItem | None:
        for row in range(self.count()):
            item = self.item(row)
            if item.data(RUN_ROLE) == run_id:
                return item
        return None

    def is_visible(self, run_id: str) -> bool:
        entry = self._entries.get(run_id)
        return entry is not None and entry.visible

    def set_visible(self, run_id: str, visible: bool) -> None:
        """Show the state without emitting ``toggled`` (the plots changed it)."""
        entry = self._entries.get(run_id)
        item = self.item_for(run_id)
        if entry is None or item is None or entry.visible == visible:
            return
        entry = self._entries[run_id] = LegendEntry(entry.run_id, entry.label, entry.detail,
                                                    entry.color, visible)
        self._show(item, entry)

    def toggle(self, run_id: str) -> None:
        visible = not self.is_visible(run_id)
        self.set_visible(run_id, visible)
        self.toggled.emit(run_id, visible)

    def _show(self, item: QListWidgetItem, entry: LegendEntry) -> None:
        label, detail = display_text(entry.label), display_text(entry.detail)
        item.setText(f"{label}\n{detail}" if detail else label)
        item.setIcon(swatch(entry.color, entry.visible))
        state = "shown" if entry.visible else "hidden"
        item.setToolTip(tooltip_text(f"{entry.label} ({entry.run_id}) — {entry.detail}\n"
                                     f"{state}: click to hide or show it in every plot; "
                                     "right-click to remove it"))
        font = QFont(self.font())
        font.setItalic(not entry.visible)
        item.setFont(font)
        role = QPalette.ColorRole.Text if entry.visible else QPalette.ColorRole.PlaceholderText
        item.setForeground(self.palette().color(role))

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        if not _extending():
            self.toggle(str(item.data(RUN_ROLE)))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        current = self.currentItem()
        if event.key() == Qt.Key.Key_Space and current is not None:
            self.toggle(str(current.data(RUN_ROLE)))
        elif event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected_ids():
            self.remove_requested.emit(self.selected_ids())
        else:
            super().keyPressEvent(event)

    def selected_ids(self) -> list[str]:
        return [str(item.data(RUN_ROLE)) for item in self.selectedItems()]

    def _on_context_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        run_id = str(item.data(RUN_ROLE))
        chosen = self.selected_ids() if item.isSelected() else [run_id]
        menu = self.context_menu(run_id, chosen)
        menu.exec(self.viewport().mapToGlobal(pos))

    def context_menu(self, run_id: str, chosen: list[str]) -> QMenu:
        """The menu of one entry (``chosen``: what "Remove" acts on)."""
        menu = QMenu(self)
        label = self._entries[run_id].label if run_id in self._entries else run_id
        menu.addAction("Hide" if self.is_visible(run_id) else "Show",
                       lambda: self.toggle(run_id))
        menu.addAction("Show only this run", lambda: self.show_only(run_id))
        menu.addAction("Show all runs", self.show_all)
        menu.addSeparator()
        menu.addAction("Open run window", lambda: self.open_requested.emit(run_id))
        text = (f"Remove “{label}” from the comparison" if len(chosen) == 1
                else f"Remove {len(chosen)} runs from the comparison")
        menu.addAction(text, lambda: self.remove_requested.emit(list(chosen)))
        return menu

    def show_only(self, run_id: str) -> None:
        for other in self.run_ids():
            if self.is_visible(other) != (other == run_id):
                self.toggle(other)

    def show_all(self) -> None:
        for other in self.run_ids():
            if not self.is_visible(other):
                self.toggle(other)


class MetricChooser(QListWidget):
    """Which metrics are plotted: a check box per metric name."""

    chosen_changed = Signal(list)  # names, when the user changed the choice

    def __init__(self) -> None:
        super().__init__()
        self.itemChanged.connect(self._on_item_changed)
        self._quiet = False

    def set_metrics(self, names: Iterable[str], chosen: Iterable[str]) -> None:
        """All metric names (in display order) and those checked; emits nothing."""
        picked = set(chosen)
        self._quiet = True
        try:
            names = list(names)
            if names != self.names():
                self.clear()
                for name in names:
                    item = QListWidgetItem(name)
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                    self.addItem(item)
            for row in range(self.count()):
                item = self.item(row)
                state = Qt.CheckState.Checked if item.text() in picked else Qt.CheckState.Unchecked
                if item.checkState() != state:
                    item.setCheckState(state)
        finally:
            self._quiet = False

    def names(self) -> list[str]:
        return [self.item(r).text() for r in range(self.count())]

    def chosen(self) -> list[str]:
        return [self.item(r).text() for r in range(self.count())
                if self.item(r).checkState() == Qt.CheckState.Checked]

    def set_checked(self, name: str, checked: bool) -> None:
        """As if the user clicked the box of ``name`` (emits ``chosen_changed``)."""
        for row in range(self.count()):
            item = self.item(row)
            if item.text() == name:
                item.setCheckState(Qt.CheckState.Checked if checked
                                   else Qt.CheckState.Unchecked)

    def _on_item_changed(self, _item: QListWidgetItem) -> None:
        if not self._quiet:
            self.chosen_changed.emit(self.chosen())
