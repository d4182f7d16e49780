"""Turns the core's plain callbacks (worker threads) into Qt signals on the GUI thread.

``ClusterBridge`` is the only place where cluster events cross into Qt. ``TrustPrompter``
is the ``TrustDecider`` handed to sessions: a worker thread calls it, the GUI thread asks
the user, the worker waits for the answer.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QDialog, QWidget

from app.ui.hostkey_dialog import HostKeyDialog, KeyQuestion


class ClusterBridge(QObject):
    """A ``ClusterListener`` whose public signals are always emitted on the GUI thread.

    Samples are coalesced here: while one ``host_sample`` for a host waits in the event
    queue, further samples of that host add nothing to it (10 Hz times many hosts must not
    flood the GUI thread; the view reads the latest values anyway).
    """

    host_changed = Signal(str)
    host_sample = Signal(str)
    host_removed = Signal(str)

    # Emitted on the worker thread, delivered queued to this object's (GUI) thread.
    _changed_queued = Signal(str)
    _sample_queued = Signal(str)
    _removed_queued = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending_samples: set[str] = set()
        self._detached = False
        queued = Qt.ConnectionType.QueuedConnection
        self._changed_queued.connect(self._deliver_changed, queued)
        self._sample_queued.connect(self._deliver_sample, queued)
        self._removed_queued.connect(self._deliver_removed, queued)

    def detach(self) -> None:
        """Ignore every later callback (the window is closing)."""
        with self._lock:
            self._detached = True

    # -- ClusterListener (any thread) --------------------------------------------------
    def on_host_changed(self, name: str) -> None:
        if not self._detached:
            self._changed_queued.emit(name)

    def on_host_sample(self, name: str) -> None:
        with self._lock:
            if self._detached or name in self._pending_samples:
                return
            self._pending_samples.add(name)
        self._sample_queued.emit(name)

    def on_host_removed(self, name: str) -> None:
        if not self._detached:
            self._removed_queued.emit(name)

    # -- GUI thread ------------------------------------------------------------------
    @Slot(str)
    def _deliver_changed(self, name: str) -> None:
        self.host_changed.emit(name)

    @Slot(str)
    def _deliver_sample(self, name: str) -> None:
        with self._lock:
            self._pending_samples.discard(name)
        self.host_sample.emit(name)

    @Slot(str)
    def _deliver_removed(self, name: str) -> None:
        self.host_removed.emit(name)


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
