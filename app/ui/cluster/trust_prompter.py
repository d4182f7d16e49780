"""``TrustPrompter``: the ``TrustDecider`` handed to sessions. A session thread asks
whether to trust a host key, the GUI thread asks the user, the session waits for the answer.

A question with an answer, not an event: the core's events reach Qt through
``app.ui.common.event_bridge``.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QDialog, QWidget

from app.ui.cluster.hostkey_dialog import HostKeyDialog, KeyQuestion


def _on_gui_thread() -> bool:
    app = QCoreApplication.instance()
    return app is not None and QThread.currentThread() is app.thread()


class TrustPrompter(QObject):
    """``TrustDecider``: ask the user whether to trust an unknown host key.

    Called on a session's worker thread, it blocks that thread (never the GUI thread)
    until the user answers. Questions are shown one at a time. A declined question is
    remembered so the host's "Trust…" button can ask again; a key approved that way is
    accepted without a second dialog when the session reconnects.
    """

    prompt_shown = Signal(object)  # the HostKeyDialog, once it is visible
    _asked = Signal(object, object)  # (question, Future[bool]) → GUI thread

    def __init__(self, parent_widget: QWidget | None = None) -> None:
        super().__init__()
        self._parent_widget = parent_widget
        self._lock = threading.Lock()
        self._closing = False
        self._queue: collections.deque[tuple[KeyQuestion, Future[bool]]] = collections.deque()
        self._current: HostKeyDialog | None = None
        self._current_future: Future[bool] | None = None
        self._declined: dict[str, KeyQuestion] = {}
        self._approved: set[tuple[str, int, str, str]] = set()
        self._asked.connect(self._enqueue, Qt.ConnectionType.QueuedConnection)

    def set_parent_widget(self, widget: QWidget | None) -> None:
        self._parent_widget = widget

    # -- the decider (worker threads) ------------------------------------------------
    def __call__(self, question: KeyQuestion) -> bool:
        key = _key(question)
        with self._lock:
            if self._closing:
                return False
            if key in self._approved:
                self._approved.discard(key)
                return True
        if _on_gui_thread():
            # Never wait for ourselves: ask with a modal dialog right here instead.
            answer = self._ask_modal(question)
        else:
            future: Future[bool] = Future()
            self._asked.emit(question, future)
            answer = future.result()
        if not answer:
            with self._lock:
                self._declined[question.host] = question
        return answer

    def close(self) -> None:
        """Refuse every pending and later question (the app is closing)."""
        with self._lock:
            self._closing = True
            pending = list(self._queue)
            self._queue.clear()
        for _question, future in pending:
            _resolve(future, False)
        if self._current_future is not None:
            _resolve(self._current_future, False)
        if self._current is not None:
            self._current.reject()

    # -- the "Trust…" button (GUI thread) -----------------------------------------------
    def declined_question(self, hosts: set[str]) -> KeyQuestion | None:
        """The last question the user declined for any of ``hosts`` (names/addresses)."""
        with self._lock:
            for host in hosts:
                if host in self._declined:
                    return self._declined[host]
        return None

    def approve(self, question: KeyQuestion) -> None:
        """Accept this exact key at the next question about it (after a reconnect)."""
        with self._lock:
            self._approved.add(_key(question))
            self._declined.pop(question.host, None)

    def open_dialog(self, question: KeyQuestion) -> HostKeyDialog:
        """Show the dialog without blocking; the caller connects to its result."""
        dialog = HostKeyDialog(question, self._parent_widget)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.prompt_shown.emit(dialog)
        return dialog

    # -- GUI thread ------------------------------------------------------------------
    def _ask_modal(self, question: KeyQuestion) -> bool:
        dialog = HostKeyDialog(question, self._parent_widget)
        self.prompt_shown.emit(dialog)
        return dialog.exec() == QDialog.DialogCode.Accepted

    @Slot(object, object)
    def _enqueue(self, question: KeyQuestion, future: Future[bool]) -> None:
        with self._lock:
            if self._closing:
                _resolve(future, False)
                return
            self._queue.append((question, future))
        self._show_next()

    def _show_next(self) -> None:
        if self._current is not None:
            return
        with self._lock:
            if not self._queue:
                return
            question, future = self._queue.popleft()
        dialog = self.open_dialog(question)
        self._current, self._current_future = dialog, future
        dialog.finished.connect(lambda code: self._on_finished(future, code))

    def _on_finished(self, future: Future[bool], code: int) -> None:
        _resolve(future, code == QDialog.DialogCode.Accepted.value)
        self._current = None
        self._current_future = None
        self._show_next()


def _key(question: KeyQuestion) -> tuple[str, int, str, str]:
    return (question.host, question.port, question.key_type, question.fingerprint)


def _resolve(future: Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
