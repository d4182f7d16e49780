"""Text that is not ours, shown as text: the one rule for every widget of app/ui.

Host, process, user, GPU, run and metric names, reasons, error details and notifications
come from hosts and labmates. Qt guesses rich text wherever it may (a QLabel by default,
every tooltip, a message box) and pyqtgraph renders titles and legend names as HTML, so
a process named ``<img src=/dev/zero>`` would make Qt read /dev/zero without end. Here
labels are plain text, tooltips and HTML sinks get the text escaped, and every string is
cut to what a screen can show, its control and bidi-override characters made visible.
Our own markup (``rich_label``) is built from pieces passed through ``html_text``.
"""

from __future__ import annotations

import html

from PySide6 import QtGui
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

# A label or tooltip shows at most this much of one string (a 1 MB command is data,
# not something to lay out).
MAX_SHOWN_CHARS = 2000
# A window title is one line of a title bar or a task list.
TITLE_CHARS = 200
ELLIPSIS = "…"
REPLACEMENT = "\ufffd"
# C0 and C1 controls (but tab and newline), and the bidi embeddings, overrides and
# isolates that let a name display as something else ("\u202egnp.exe" reads "exe.png").
_NEUTRAL: dict[int, str | None] = {
    **{c: REPLACEMENT for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c not in (9, 10)},
    **{c: REPLACEMENT for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
    0x0D: None,  # "\r\n" line ends read as "\n"
}
# Look-alikes for the characters that markup needs, where a message may be read as
# markup or as plain text and either must look right.
_NO_MARKUP = str.maketrans({"<": "\uff1c", ">": "\uff1e", "&": "\uff06"})


def display_text(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` as a widget may show it: at most ``limit`` characters (the last one an
    ellipsis when cut), controls and bidi overrides replaced by U+FFFD."""
    text = text if isinstance(text, str) else str(text)
    if len(text) > limit:
        text = text[:limit - 1] + ELLIPSIS
    # isprintable() is false for every character _NEUTRAL maps (and for a few harmless
    # ones): the common case is one fast check.
    return text if text.isprintable() else text.translate(_NEUTRAL)


def title_text(text: object) -> str:
    """``text`` for ``setWindowTitle`` (plain already, but a title bar is short)."""
    return display_text(text, TITLE_CHARS)


def action_text(text: object) -> str:
    """``text`` for a menu entry: bounded, and an "&" shown as itself (Qt takes a lone
    one for the mark of a keyboard shortcut)."""
    return display_text(text, TITLE_CHARS).replace("&", "&&")


def html_text(text: object) -> str:
    """``text`` escaped for an HTML sink (a rich label of ours, a pyqtgraph title or
    legend name): it shows literally what it says."""
    return html.escape(display_text(text), quote=False)


def html_paragraphs(text: object) -> str:
    """``text`` as escaped HTML paragraphs, its line breaks kept."""
    return QtGui.Qt.convertFromPlainText(display_text(text), Qt.WhiteSpaceMode.WhiteSpaceNormal)


def tooltip_text(text: object) -> str:
    """``text`` for ``setToolTip``: Qt shows a tooltip as rich text when
    ``Qt::mightBeRichText`` says so; such text is escaped, any other is left as it is."""
    plain = display_text(text)
    return html_paragraphs(plain) if QtGui.Qt.mightBeRichText(plain) else plain


def markup_free(text: object) -> str:
    """``text`` with look-alikes for ``<``, ``>`` and ``&``: for a message that the
    desktop may read as markup or show as plain text (a tray icon's balloon)."""
    return display_text(text).translate(_NO_MARKUP)


class PlainLabel(QLabel):
    """A QLabel that never interprets its text: plain text bounded by ``display_text``,
    its tooltip made safe by ``tooltip_text``. Every label of app/ui is one (or a
    ``rich_label``)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        if text:
            self.setText(text)

    def setText(self, text: str, /) -> None:
        super().setText(display_text(text))

    def setToolTip(self, text: str, /) -> None:
        super().setToolTip(tooltip_text(text))


def rich_label(markup: str, parent: QWidget | None = None) -> QLabel:
    """A label of our own markup; anything not ours in it must come through ``html_text``."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setText(markup)
    return label


def plain_message_box(icon: QMessageBox.Icon, title: str, text: str,
                      parent: QWidget | None = None) -> QMessageBox:
    """A message box with an OK button whose text (and informative text) is plain."""
    box = QMessageBox(icon, title, display_text(text), QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    return box
