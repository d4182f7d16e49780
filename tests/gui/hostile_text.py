"""Hostile strings, as a host or a labmate could send them, and checks that every label,
tooltip and plot text of a window shows them as text.

The image source is a FIFO standing in for ``/dev/zero``: a widget that interprets
``<img src=…>`` opens it, which the canary counts, and reads an empty file instead of
reading without end, so a regression fails the test instead of freezing (or filling the
memory of) the machine that runs it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from PySide6 import QtGui
from PySide6.QtCore import QAbstractItemModel, QAbstractListModel, QModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGraphicsTextItem,
    QGraphicsView,
    QHeaderView,
    QLabel,
    QWidget,
)

BOLD = "<b>bold</b>"
LINK = '<a href="x">link</a>'
ENTITY = "&amp;"
RTL = "\u202e"  # right-to-left override: reverses what follows it
CONTROLS = "\x00\x07\x1b[31m"
# What a screen can show of one string; the app cuts far below this.
MAX_SHOWN = 5000
_TOOLTIP = Qt.ItemDataRole.ToolTipRole


class Canary:
    """A FIFO at ``path``; ``opens()`` counts the readers that opened it.

    The writer is a shell loop, not a thread: Qt reads the file while holding the GIL,
    so a Python writer could never answer it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "zero"
        self._log = folder / "zero.opens"
        os.mkfifo(self.path)
        self._log.touch()
        # `: > fifo` waits for a reader, then closes at once: the reader sees an empty file.
        self._writer = subprocess.Popen(
            ["sh", "-c", 'while :; do : > "$1"; echo >> "$2"; done', "canary",
             str(self.path), str(self._log)])

    def opens(self) -> int:
        return len(self._log.read_text())

    def close(self) -> None:
        self._writer.terminate()
        self._writer.wait(5)


class Hostile:
    """The hostile strings of one test: ``text(what)`` carries every trick at once."""

    def __init__(self, canary: Canary) -> None:
        self.canary = canary
        self.img = f"<img src={canary.path}>"
        self.tags = (self.img, BOLD, LINK)  # markup that must never be interpreted

    def text(self, what: str) -> str:
        # Markup first: Qt guesses rich text from the first line.
        return f"{self.img}{BOLD} {what} {LINK} {ENTITY}{RTL}{CONTROLS}"

    def huge(self, what: str) -> str:
        return self.text(what) + " " + "x" * 100_000


def _where(widget: QWidget) -> str:
    parent = widget.parentWidget()
    owner = f" in {type(parent).__name__}" if parent is not None else ""
    return f"{type(widget).__name__} {widget.objectName()!r}{owner}"


def label_problems(root: QWidget, hostile: Hostile) -> list[str]:
    """Labels that interpret hostile markup, show raw controls, or show too much."""
    problems = []
    for label in root.findChildren(QLabel):
        text = label.text()
        if any(tag in text for tag in hostile.tags) \
                and label.textFormat() != Qt.TextFormat.PlainText:
            problems.append(f"{_where(label)} shows markup as {label.textFormat().name}: "
                            f"{text[:60]!r}")
        if RTL in text or "\x00" in text or "\x1b" in text:
            problems.append(f"{_where(label)} shows control characters raw: {text[:60]!r}")
        if len(text) > MAX_SHOWN:
            problems.append(f"{_where(label)} shows {len(text):,} characters")
    return problems


def _model_tooltips(model: QAbstractItemModel, rows: int = 100) -> list[object]:
    tips: list[object] = []
    top = QModelIndex()
    # A list model's columnCount is private in PySide6: a list has one column.
    columns = 1 if isinstance(model, QAbstractListModel) else model.columnCount(top)
    for c in range(columns):
        tips.append(model.headerData(c, Qt.Orientation.Horizontal, _TOOLTIP))
        tips.extend(model.data(model.index(r, c), _TOOLTIP)
                    for r in range(min(model.rowCount(top), rows)))
    return tips


def tooltip_problems(root: QWidget, hostile: Hostile) -> list[str]:
    """Tooltips (of widgets and of item view cells) that Qt would show as rich text with
    the hostile markup in it, or that are too long to show."""
    found: list[tuple[str, object]] = [(_where(w), w.toolTip())
                                       for w in [root, *root.findChildren(QWidget)]]
    for view in root.findChildren(QAbstractItemView):
        model = view.model()
        # A header's model is its table's, walked with the table.
        if model is not None and not isinstance(view, QHeaderView):
            found.extend((f"a cell of {_where(view)}", tip) for tip in _model_tooltips(model))
    problems = []
    for where, tip in found:
        if not isinstance(tip, str):
            continue
        if QtGui.Qt.mightBeRichText(tip) and any(tag in tip for tag in hostile.tags):
            problems.append(f"tooltip of {where} is rich text with raw markup: {tip[:60]!r}")
        if len(tip) > MAX_SHOWN:
            problems.append(f"tooltip of {where} has {len(tip):,} characters")
    return problems


def plot_texts(root: QWidget) -> list[QGraphicsTextItem]:
    """Every text item of every plot scene under ``root`` (titles, legends, labels)."""
    return [item for view in root.findChildren(QGraphicsView) if view.scene() is not None
            for item in view.scene().items() if isinstance(item, QGraphicsTextItem)]


def plot_problems(root: QWidget) -> list[str]:
    """Plot texts (pyqtgraph renders titles and legend names as HTML) whose markup was
    interpreted: an embedded object, an image or a link in the document."""
    problems = []
    for item in plot_texts(root):
        html = item.toHtml()
        if "\ufffc" in item.toPlainText() or "<img" in html or "<a href" in html:
            problems.append(f"plot text interprets markup: {item.toPlainText()[:60]!r}")
    return problems
