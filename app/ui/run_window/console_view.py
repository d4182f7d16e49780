"""A run's console: the tail of its log, following new output unless the user scrolled up.

The log is read in pages on the data worker (``ConsolePager``), never whole. While the
view follows, new output is appended at the display rate and old lines fall off the top
(``maximumBlockCount``). Once the user scrolls up, the text stands still (no lines move
under the reader) and "Jump to end" says that new output waits below.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.ui.common.data_worker import DataWorker
from app.ui.common.plain_text import PlainLabel
from app.ui.run_window.console_pager import MAX_LINES, ConsolePager, ConsoleUpdate, LogSource

DISPLAY_HZ = 5.0
MAX_HIGHLIGHTS = 2000
HIGHLIGHT = QColor("#fff176")
CURRENT = QColor("#ffb74d")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class ConsoleView(QWidget):
    text_changed = Signal()  # a page or new output was put on screen

    def __init__(self, worker: DataWorker, source: LogSource, run_id: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._source = source
        self._pager = ConsolePager(source, run_id or "")
        self._key = f"console-{id(self)}"
        self._inflight = False
        # The next request: "tail", "append" or "earlier" (None: nothing to do).
        self._want: str | None = "tail" if run_id else None
        self._following = True
        self._at_tail = False
        self._new_below = False
        self._start = 0
        self._end = 0
        self._size = 0
        self._adjusting = False

        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("No console output yet.")
        self.text.verticalScrollBar().valueChanged.connect(self._on_scrolled)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the console")
        self.search.setClearButtonEnabled(True)
        self.search.setMaximumWidth(320)
        self.search.returnPressed.connect(lambda: self.find_next())
        self.search.textChanged.connect(self._on_search_changed)
        self.prev_button = QPushButton("Previous")
        self.prev_button.clicked.connect(lambda: self.find_next(backward=True))
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(lambda: self.find_next())
        self.match_label = PlainLabel()
        self.earlier_button = QPushButton("Earlier output")
        self.earlier_button.setToolTip("Load the part of the log before the first line shown")
        self.earlier_button.clicked.connect(self.load_earlier)
        self.end_button = QPushButton("Jump to end")
        self.end_button.clicked.connect(self.jump_to_end)
        self.status = PlainLabel()
        self.status.setStyleSheet("color: palette(dark);")

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.search)
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.match_label)
        bar.addStretch(1)
        bar.addWidget(self.status)
        bar.addWidget(self.earlier_button)
        bar.addWidget(self.end_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(bar)
        box.addWidget(self.text, 1)

        self._timer = QTimer(self, interval=int(1000 / DISPLAY_HZ))
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._update_buttons()

    # -- public API ------------------------------------------------------------------
    @property
    def following(self) -> bool:
        return self._following

    def set_run(self, run_id: str) -> None:
        """Show another run's log (a retry writes a new one): start at its tail."""
        self._pager = ConsolePager(self._source, run_id)
        self._following = True
        self._at_tail = False
        self.text.clear()
        self._want = "tail"
        self._tick()

    def notify_log(self) -> None:
        """The run's log grew: append at the next tick, or flag it while scrolled up."""
        if self._following and self._at_tail:
            self._want = self._want or "append"
        else:
            self._new_below = True
            self._update_buttons()

    def jump_to_end(self) -> None:
        self._following = True
        self._want = "tail"
        self._tick()

    def load_earlier(self) -> None:
        self._following = False
        self._want = "earlier"
        self._tick()

    def stop(self) -> None:
        self._timer.stop()

    def plain_text(self) -> str:
        return self.text.toPlainText()

    def find_next(self, backward: bool = False) -> bool:
        """Select the next match of the search text in the loaded part; wraps around."""
        needle = self.search.text()
        if not needle:
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        doc = self.text.document()
        found = doc.find(needle, self.text.textCursor(), flags)
        if found.isNull():
            start = QTextCursor(doc)
            start.movePosition(QTextCursor.MoveOperation.End if backward
                               else QTextCursor.MoveOperation.Start)
            found = doc.find(needle, start, flags)
        if found.isNull():
            self.match_label.setText(f"not in the loaded part ({_size(self._end - self._start)}"
                                     f" of {_size(self._size)}); try Earlier output")
            return False
        self._following = False
        self.text.setTextCursor(found)
        self.text.ensureCursorVisible()
        self._highlight(needle, found)
        self._update_buttons()
        return True

    # -- worker requests -------------------------------------------------------------------
    def _tick(self) -> None:
        if self._inflight or self._want is None:
            return
        want, self._want = self._want, None
        pager = self._pager
        if want == "earlier":
            shown = self.text.document().blockCount()
            work = lambda: pager.earlier(shown)  # noqa: E731
        elif want == "append":
            work = pager.append
        else:
            work = pager.tail
        self._inflight = True
        self._worker.submit(self._key, work, self._apply, self._on_error)

    def _on_error(self, exc: BaseException) -> None:
        self._inflight = False
        self.status.setText(f"Could not read the log: {exc}")

    def _apply(self, update: ConsoleUpdate | None) -> None:
        self._inflight = False
        if update is None:
            return
        self._start, self._end, self._size = update.start, update.end, update.size
        self._at_tail = update.at_tail
        self._adjusting = True
        try:
            if update.replace:
                self.text.setPlainText(update.text)
                self._new_below = not update.at_tail
            else:
                cursor = QTextCursor(self.text.document())
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.movePosition(QTextCursor.MoveOperation.StartOfBlock,
                                    QTextCursor.MoveMode.KeepAnchor)
                cursor.insertText(update.text)
            if update.scroll_to_line >= 0:
                self._scroll_to_line(update.scroll_to_line)
            elif self._following:
                bar = self.text.verticalScrollBar()
                bar.setValue(bar.maximum())
        finally:
            self._adjusting = False
        if self._following and update.at_tail:
            self._new_below = False
        self._update_buttons()
        if self.search.text():
            self._highlight(self.search.text(), None)
        self.text_changed.emit()

    def _scroll_to_line(self, line: int) -> None:
        block = self.text.document().findBlockByNumber(line)
        cursor = QTextCursor(block)
        self.text.setTextCursor(cursor)
        bar = self.text.verticalScrollBar()
        bar.setValue(min(bar.maximum(), line))

    # -- user actions -------------------------------------------------------------------
    def _on_scrolled(self, value: int) -> None:
        if self._adjusting:
            return
        at_bottom = value >= self.text.verticalScrollBar().maximum()
        if at_bottom and not self._following:
            self._following = True
            # Back at the bottom: catch up with what arrived meanwhile.
            self._want = "append" if self._at_tail else "tail"
        elif not at_bottom and self._following:
            self._following = False
        self._update_buttons()

    def _on_search_changed(self, text: str) -> None:
        if not text:
            self.text.setExtraSelections([])
            self.match_label.setText("")
            return
        self._highlight(text, None)

    def _highlight(self, needle: str, current: QTextCursor | None) -> None:
        doc = self.text.document()
        selections: list[QTextEdit.ExtraSelection] = []
        cursor = doc.find(needle, 0)
        while not cursor.isNull() and len(selections) < MAX_HIGHLIGHTS:
            sel = QTextEdit.ExtraSelection()
            sel.cursor = cursor
            fmt = QTextCharFormat()
            is_current = current is not None and cursor.position() == current.position()
            fmt.setBackground(CURRENT if is_current else HIGHLIGHT)
            sel.format = fmt
            selections.append(sel)
            cursor = doc.find(needle, cursor)
        self.text.setExtraSelections(selections)
        more = "+" if len(selections) >= MAX_HIGHLIGHTS else ""
        self.match_label.setText(f"{len(selections)}{more} matches" if selections
                                 else "no match in the loaded part")

    def _update_buttons(self) -> None:
        behind = not (self._following and self._at_tail)
        self.end_button.setEnabled(behind or self._new_below)
        self.end_button.setText("Jump to end ↓ (new output)" if self._new_below and behind
                                else "Jump to end")
        self.earlier_button.setEnabled(self._start > 0)
        shown = self._end - self._start
        if self._size > shown:
            self.status.setText(f"showing {_size(shown)} of {_size(self._size)}")
        else:
            self.status.setText("")
