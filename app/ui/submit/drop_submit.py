"""Drop to submit: scripts, folders and job files dropped anywhere on the main window open
the submit dialog; dropped on a host or on a GPU tile, the runs are pinned there.

The window accepts drops and one event filter on it decides. Qt hands a drag that its
children do not take to the window, with the position in the window's coordinates, so
``childAt`` finds the tile under the cursor. What is dropped is judged when the drag
enters, so the cursor shows a refusal before anything is let go, and the status bar says
why; while the drag moves, the host or GPU it would be pinned to is outlined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QMimeData, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFrame, QMainWindow, QWidget

from app.ui.cluster.gpu_tile import GpuTile
from app.ui.cluster.host_group import HostGroup
from app.ui.common.context import AppContext
from app.ui.submit.dialog import SubmitDialog, open_submit_dialog
from app.ui.submit.items import ACCEPTED, drop_kind

# Dragged between Labdeck's own views (runs into a comparison): not ours, and no message.
RUN_IDS_MIME = "application/x-labdeck-run-ids"
REFUSAL_MS = 8000
HIGHLIGHT_STYLE = ("QFrame#dropTarget { border: 2px solid #1e6fd9; border-radius: 8px;"
                   " background: rgba(30, 111, 217, 36); }")

SubmitDialogOpener = Callable[..., SubmitDialog]


@dataclass(frozen=True, slots=True)
class DropVerdict:
    """What a drag carries: the paths Labdeck can queue, what it cannot, and a sentence."""

    paths: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.paths)


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def judge_drop(mime: QMimeData) -> DropVerdict | None:
    """The verdict on a drag's data; None for Labdeck's own run drags (left alone)."""
    if not mime.hasUrls():
        if mime.hasFormat(RUN_IDS_MIME):
            return None
        return DropVerdict(message=f"{ACCEPTED}; this drag carries no file")
    paths: list[Path] = []
    refused: list[str] = []
    for url in mime.urls():
        if not url.isLocalFile():
            refused.append(url.toDisplayString())
            continue
        path = Path(url.toLocalFile())
        if drop_kind(path) is None:
            refused.append(path.name or str(path))
        else:
            paths.append(path)
    if not paths:
        verb = "is" if len(refused) == 1 else "are"
        return DropVerdict([], refused, f"{ACCEPTED}; {_names(refused)} {verb} none of these")
    message = f"Drop to queue {_names([p.name for p in paths])}"
    if refused:
        message += f" (skipping {_names(refused)}: not a script, folder or job file)"
    return DropVerdict(paths, refused, message)


def pin_target(window: QWidget, pos: QPoint) -> tuple[QWidget | None, str | None, tuple[int, ...]]:
    """The host group or GPU tile under ``pos`` (window coordinates), its host and GPUs."""
    widget = window.childAt(pos)
    while widget is not None and widget is not window:
        if isinstance(widget, GpuTile):
            group = widget.parentWidget()
            while group is not None and not isinstance(group, HostGroup):
                group = group.parentWidget()
            if group is not None:
                return widget, group.name, (widget.index,)
        if isinstance(widget, HostGroup):
            return widget, widget.name, ()
        widget = widget.parentWidget()
    return None, None, ()


class DropSubmitter(QObject):
    """The window's drop handling; ``dialog_opened`` carries each dialog it opens."""

    dialog_opened = Signal(object)

    def __init__(self, window: QMainWindow, ctx: AppContext,
                 submit_dialog: SubmitDialogOpener = open_submit_dialog) -> None:
        super().__init__(window)
        self._window = window
        self._ctx = ctx
        self._open_dialog = submit_dialog
        self.last_dialog: SubmitDialog | None = None
        self.highlight = QFrame(window)
        self.highlight.setObjectName("dropTarget")
        self.highlight.setStyleSheet(HIGHLIGHT_STYLE)
        # Invisible to childAt and to the mouse, so it never hides the tile under it.
        self.highlight.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.highlight.hide()
        window.setAcceptDrops(True)
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is not self._window:
            return False
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            assert isinstance(event, QDropEvent)
            return self._on_drag(event, drop=kind == QEvent.Type.Drop)
        if kind == QEvent.Type.DragLeave:
            self._end_drag()
            return True
        return False

    def _on_drag(self, event: QDropEvent, drop: bool) -> bool:
        verdict = judge_drop(event.mimeData())
        if verdict is None:
            return False
        if not verdict.ok:
            event.ignore()
            self._end_drag()
            self._window.statusBar().showMessage(verdict.message, REFUSAL_MS)
            return True
        target, host, gpus = pin_target(self._window, event.position().toPoint())
        if Qt.DropAction.CopyAction & event.possibleActions():
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
        else:
            event.acceptProposedAction()
        if drop:
            self._end_drag()
            paths = list(verdict.paths)
            QTimer.singleShot(0, lambda: self.open_dialog(paths, host, gpus))
            return True
        self._show_target(target)
        where = ""
        if host is not None:
            where = f" on {host}" + (f", GPU {gpus[0]}" if gpus else " (any of its GPUs)")
        self._window.statusBar().showMessage(verdict.message + where)
        return True

    def _show_target(self, target: QWidget | None) -> None:
        if target is None:
            self.highlight.hide()
            return
        top_left = target.mapTo(self._window, QPoint(0, 0))
        self.highlight.setGeometry(QRect(top_left, target.size()))
        self.highlight.raise_()
        self.highlight.show()

    def _end_drag(self) -> None:
        self.highlight.hide()
        self._window.statusBar().clearMessage()

    def open_dialog(self, paths: Sequence[Path], host: str | None = None,
                    gpus: Sequence[int] = ()) -> Any:
        """The submit dialog for ``paths`` (what a drop does, also for a second instance
        handing over files)."""
        dialog = self._open_dialog(self._window, self._ctx, None, paths=list(paths),
                                   pin_host=host, pin_gpus=tuple(gpus))
        self.last_dialog = dialog
        self.dialog_opened.emit(dialog)
        return dialog


def install_drop_submit(window: QMainWindow, ctx: AppContext,
                        submit_dialog: SubmitDialogOpener = open_submit_dialog) -> DropSubmitter:
    """Make ``window`` take dropped scripts, folders and job files (see the module doc)."""
    return DropSubmitter(window, ctx, submit_dialog)
