"""One Labdeck window per user and data home: a second ``labdeck`` hands its arguments
(files to queue, …) to the running one and exits.

The first instance holds a lock file in ``LABDECK_HOME`` and listens on a local socket
named after the user and a hash of that home (two homes, two independent instances). A
later call connects, sends its argv as one JSON line and waits for ``ok``. The socket is
reachable by its owner only (``UserAccessOption``).

Wiring (the entry point): ``inst = SingleInstance(); if inst.try_forward(argv): return 0``
before building the window, then ``inst.listen()`` and connect ``inst.received``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import time
from pathlib import Path

import shiboken6
from PySide6.QtCore import QByteArray, QDeadlineTimer, QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app.core import paths

log = logging.getLogger(__name__)

CONNECT_MS = 1000
MAX_MESSAGE = 1 << 20  # argv of a generous drag of files; anything bigger is refused


def server_name(home: Path | None = None) -> str:
    """``labdeck-<user>-<hash of the data home>``: per user, per ``LABDECK_HOME``."""
    home = home if home is not None else paths.home()
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    user = "".join(c for c in getpass.getuser() if c.isalnum()) or "user"
    return f"labdeck-{user}-{digest}"


class SingleInstance(QObject):
    received = Signal(list)  # argv handed over by a later call (GUI thread)

    def __init__(self, name: str | None = None, home: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        home = home if home is not None else paths.home()
        self.name = name or server_name(home)
        self._lock = QLockFile(str(home / f"{self.name}.lock"))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone
        self._server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytearray] = {}

    # -- a later call -----------------------------------------------------------------
    def try_forward(self, argv: list[str], timeout_ms: int = 3000) -> bool:
        """Hand ``argv`` to a running instance; True when it took it (then exit 0).

        False when no instance runs (this one should become it). While another process
        holds the lock but is not listening yet, keep trying until ``timeout_ms``.
        """
        deadline = QDeadlineTimer(timeout_ms)
        while True:
            if self._send(argv, CONNECT_MS):
                return True
            if self._lock.isLocked() or self._lock.tryLock(0):
                return False  # nobody else holds it: we are (or will be) the instance
            if deadline.hasExpired():
                return False
            time.sleep(0.05)

    def _send(self, argv: list[str], timeout_ms: int) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(timeout_ms):
            return False
        socket.write(QByteArray(json.dumps([str(a) for a in argv]).encode() + b"\n"))
        if not socket.waitForBytesWritten(timeout_ms):
            socket.abort()
            return False
        reply = b""
        while b"\n" not in reply and socket.waitForReadyRead(timeout_ms):
            reply += bytes(socket.readAll().data())
        socket.disconnectFromServer()
        return reply.strip() == b"ok"

    # -- the running instance ---------------------------------------------------------
    def listen(self) -> bool:
        """Become the instance: take the lock and listen. False if another one runs."""
        if not (self._lock.isLocked() or self._lock.tryLock(0)):
            return False
        # The lock is ours, so a socket file left behind is from a crashed instance.
        QLocalServer.removeServer(self.name)
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            log.warning("cannot listen on %s: %s", self.name, server.errorString())
            self._lock.unlock()
            return False
        server.newConnection.connect(self._on_new_connection)
        self._server = server
        return True

    def is_listening(self) -> bool:
        return self._server is not None and self._server.isListening()

    def socket_path(self) -> str:
        """The socket file while listening (empty otherwise)."""
        return self._server.fullServerName() if self._server is not None else ""

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock.isLocked():
            self._lock.unlock()

    @Slot()
    def _on_new_connection(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            self._buffers[socket] = bytearray()
            socket.readyRead.connect(lambda s=socket: self._on_ready_read(s))
            socket.disconnected.connect(lambda s=socket: self._forget(s))

    def _on_ready_read(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket)
        if buffer is None:
            return
        buffer += bytes(socket.readAll().data())
        if len(buffer) > MAX_MESSAGE:
            socket.abort()
            return
        if b"\n" not in buffer:
            return
        line = bytes(buffer.split(b"\n", 1)[0])
        try:
            argv = json.loads(line)
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("not a list of strings")
        except ValueError:
            socket.write(QByteArray(b"error\n"))
            socket.disconnectFromServer()
            return
        socket.write(QByteArray(b"ok\n"))
        socket.flush()
        self.received.emit(argv)

    def _forget(self, socket: QLocalSocket) -> None:
        self._buffers.pop(socket, None)
        if shiboken6.isValid(socket):  # the server may already have destroyed it
            socket.deleteLater()
