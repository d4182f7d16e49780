"""Where a notification pops up: the tray, a freedesktop desktop notification, or a toast.

Each channel says whether it is ``available()`` and ``show``s an event, reporting through
``done(ok)`` on the GUI thread whether it was delivered (the desktop channel learns that
only after the D-Bus round trip). A click on what was shown calls ``clicked(event)``.
The ``Notifier`` tries them in order and stops at the first that delivers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from PySide6.QtWidgets import QSystemTrayIcon, QWidget

from app.core.events import EventBus
from app.core.events import Notification as BusNotification
from app.core.notify_events import NotifyEvent
from app.ui.common.data_worker import DataWorker
from app.ui.common.event_bridge import EventBridge
from app.ui.common.plain_text import display_text, html_text, markup_free
from app.ui.common.resources import resource_path
from app.ui.notify.toast import Toast

log = logging.getLogger(__name__)

Done = Callable[[bool], None]
Clicked = Callable[[NotifyEvent], None]

TRAY_MESSAGE_MS = 8000


class Channel(Protocol):
    name: str

    def available(self) -> bool: ...

    def show(self, event: NotifyEvent, done: Done) -> None: ...

    def close(self) -> None: ...


class TrayChannel:
    """Balloon messages of the tray icon; ``messageClicked`` names no message, so the last
    one shown is the one clicked."""

    name = "tray"

    def __init__(self, icon: QSystemTrayIcon | None, clicked: Clicked) -> None:
        self._icon = icon
        self._clicked = clicked
        self._last: NotifyEvent | None = None
        if icon is not None:
            icon.messageClicked.connect(self._on_message_clicked)

    def available(self) -> bool:
        return (self._icon is not None and QSystemTrayIcon.isSystemTrayAvailable()
                and QSystemTrayIcon.supportsMessages() and self._icon.isVisible())

    def show(self, event: NotifyEvent, done: Done) -> None:
        assert self._icon is not None
        self._last = event
        # Where the desktop runs a StatusNotifier host, Qt hands the message to its
        # notification server, which reads the body as markup; where Qt draws a balloon
        # itself the body is plain text. Look-alikes for < > & read right in both.
        self._icon.showMessage(display_text(event.title), markup_free(event.body),
                               self._icon.icon(), TRAY_MESSAGE_MS)
        done(True)

    def _on_message_clicked(self) -> None:
        if self._last is not None:
            self._clicked(self._last)

    def close(self) -> None:
        self._last = None


class DesktopChannel:
    """freedesktop notifications over D-Bus through ``desktop-notifier``.

    The library is asyncio-based and needs a running loop to hear about clicks, so it gets
    its own thread and loop, started on first use; the GUI thread only schedules sends.
    Each send is awaited on a ``DataWorker``, whose result is ``done`` on the GUI thread.
    A send that the server did not accept reports ``done(False)`` (``desktop-notifier``
    logs and swallows the error; its ``on_dispatched`` tells success apart). A click
    travels from the loop as the bus ``Notification`` it belongs to, on a bus of this
    channel's own, and its ``EventBridge`` hands it to the GUI thread.
    """

    name = "desktop"

    def __init__(self, clicked: Clicked, app_name: str = "Labdeck",
                 timeout_s: float = 10.0) -> None:
        self._sends = DataWorker("labdeck-notify-send", idle_exit=True)
        self._serial = itertools.count()
        self._in_flight: set[Future[bool]] = set()
        self._clicks = EventBus()
        self._bridge = EventBridge(self._clicks, types=(BusNotification,))
        self._bridge.notification.connect(lambda note: clicked(note.event))
        self._app_name = app_name
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notifier: object | None = None
        self._closed = False

    def available(self) -> bool:
        if self._closed or not sys.platform.startswith("linux"):
            return False
        if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            return True
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        return runtime is not None and Path(runtime, "bus").exists()

    def show(self, event: NotifyEvent, done: Done) -> None:
        loop = self._ensure_loop()
        if loop is None:
            done(False)
            return
        future: Future[bool] = asyncio.run_coroutine_threadsafe(self._send(event), loop)
        self._in_flight.add(future)

        def wait() -> bool:
            try:
                return future.result()
            finally:
                self._in_flight.discard(future)

        self._sends.submit(f"send-{next(self._serial)}", wait, done, lambda _exc: done(False))

    async def _send(self, event: NotifyEvent) -> bool:
        from desktop_notifier import DesktopNotifier, Icon, Notification

        if self._notifier is None:
            svg = resource_path("icons/labdeck.svg")
            icon = Icon(path=svg) if svg.is_file() else None
            self._notifier = DesktopNotifier(app_name=self._app_name, app_icon=icon)
        notifier = self._notifier
        assert isinstance(notifier, DesktopNotifier)
        dispatched = asyncio.Event()
        # freedesktop notifications: the summary is plain text, the body may be markup.
        note = Notification(
            title=display_text(event.title), message=html_text(event.body),
            on_dispatched=dispatched.set,
            on_clicked=lambda: self._clicks.publish(BusNotification(event)),
        )
        try:
            await asyncio.wait_for(notifier.send_notification(note), self._timeout_s)
        except TimeoutError:
            log.warning("the desktop notification server did not answer in %.0f s",
                        self._timeout_s)
            return False
        return dispatched.is_set()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop | None:
        with self._lock:
            if self._closed:
                return None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="labdeck-notify-dbus",
                                                daemon=True)
                self._thread.start()
                ready.wait(5)
                self._loop = loop
            return self._loop

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        self._bridge.detach()
        for future in list(self._in_flight):
            future.cancel()  # a send waiting for the server: its worker thread ends now
        self._sends.stop(timeout=0)
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            backend = getattr(self._notifier, "_backend", None)
            bus = getattr(backend, "bus", None)
            if bus is not None:
                bus.disconnect()
                await asyncio.wait_for(bus.wait_for_disconnect(), 2)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(3)
        except Exception:  # a bus already gone is as good as a closed one
            log.debug("closing the D-Bus connection failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class ToastChannel:
    """The in-app toast at the window's bottom-right: always available while the window is."""

    name = "toast"

    def __init__(self, window: QWidget, clicked: Clicked) -> None:
        self._window = window
        self._clicked = clicked
        self.toast: Toast | None = None

    def available(self) -> bool:
        return True

    def show(self, event: NotifyEvent, done: Done) -> None:
        if self.toast is None:
            self.toast = Toast(self._window)
            self.toast.clicked.connect(self._on_clicked)
        self.toast.show_event(event)
        done(True)

    def _on_clicked(self, event: object) -> None:
        if isinstance(event, NotifyEvent):
            self._clicked(event)

    def close(self) -> None:
        if self.toast is not None:
            self.toast.hide()
