"""Read an agent's JSON lines and keep its heartbeat, over SSH or a local pipe alike.

``AgentReader.run`` owns one agent connection from the first byte to its end: it checks
that ``hello`` comes first, forwards samples, pings the agent, marks the host stale after
a few silent intervals and gives up after ``dead_after`` seconds of silence, so a frozen
peer never blocks the session thread. With a ``WatchBook`` it also sends the session's
watches after hello (and whatever is queued later) and forwards ``tail`` chunks.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ssh_backend.events import SessionListener
from ssh_backend.protocol import (
    MAX_LINE_BYTES,
    AgentError,
    Hello,
    ProtocolError,
    Sample,
    TailChunk,
    decode,
    encode_command,
)
from ssh_backend.states import HostState
from ssh_backend.watches import WatchBook

log = logging.getLogger(__name__)

READ_SLICE_S = 0.2  # how often stop / wake / timers are looked at while waiting for data
STDERR_KEEP_BYTES = 8192


class AgentStream(Protocol):
    """The agent's stdin/stdout/stderr, wherever it runs."""

    def read(self, timeout: float) -> bytes | None:
        """Stdout bytes; ``b""`` at end of stream; ``None`` when nothing came in time."""

    def write(self, data: bytes) -> None:
        """Send to the agent's stdin; raises OSError when that is no longer possible."""

    def stderr_text(self) -> str:
        """The last few KiB the agent wrote to stderr."""

    def exit_status(self, timeout: float) -> int | None:
        """The exit code once the agent ended (None if unknown within ``timeout``)."""

    def close(self) -> None:
        """End the agent's stdin and release everything."""


class StderrTail:
    """A bounded buffer for stderr: a chatty agent cannot grow memory without end."""

    def __init__(self, limit: int = STDERR_KEEP_BYTES) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            while self._size > self._limit and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)[-self._limit :]
        return data.decode("utf-8", errors="replace")


def last_line(text: str) -> str:
    """The last non-empty line of stderr (usually the exception), for a detail message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


EndReason = Literal["stopped", "wake", "eof", "dead", "failed"]


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why an agent connection ended: ``eof`` (closed), ``dead`` (silent too long),
    ``failed`` (the agent misbehaved), ``stopped`` / ``wake`` (asked to)."""

    reason: EndReason
    detail: str
    got_hello: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    ping_interval: float
    stale_after: float
    dead_after: float


class AgentReader:
    """Runs one agent connection; callbacks go to ``listener`` on the calling thread."""

    def __init__(
        self,
        host: str,
        listener: SessionListener,
        set_state: Callable[[HostState, str], None],
        heartbeat: Heartbeat,
        stop: threading.Event,
        wake: threading.Event,
        watches: WatchBook | None = None,
    ) -> None:
        self.host = host
        self.watches = watches
        self._announce_watches = False
        self.listener = listener
        self.set_state = set_state
        self.heartbeat = heartbeat
        self.stop = stop
        self.wake = wake
        self.hello: Hello | None = None
        self.bad_lines = 0
        self.samples = 0

    def run(self, stream: AgentStream) -> StreamEnd:
        try:
            return self._run(stream)
        finally:
            if self.watches is not None:
                self.watches.disconnected()

    def _send_watches(self, stream: AgentStream) -> None:
        """Watches to send: all of them once after hello, then whatever is queued."""
        if self.watches is None or self.hello is None:
            return
        if self._announce_watches:
            self._announce_watches = False
            commands = self.watches.connected()
        else:
            commands = self.watches.take_pending()
        for command in commands:
            stream.write(command)

    def _run(self, stream: AgentStream) -> StreamEnd:
        buffer = bytearray()
        last_rx = time.monotonic()
        next_ping = last_rx + self.heartbeat.ping_interval
        ping_id = 0
        stale = False
        samples_at_stale = 0
        while True:
            if self.stop.is_set():
                self._shutdown(stream)
                return self._end("stopped", "")
            if self.wake.is_set():
                return self._end("wake", "reconnect requested")
            data = stream.read(READ_SLICE_S)
            now = time.monotonic()
            if data == b"":
                return self._end("eof", "")
            if data:
                last_rx = now
                buffer += data
                failure = self._consume(buffer)
                if failure:
                    return self._end("failed", failure)
            try:
                self._send_watches(stream)
            except OSError as exc:
                return self._end("eof", f"cannot write to the agent: {exc}")
            if stale and self.samples != samples_at_stale:
                stale = False  # a sample came back and set the state again
            silent = now - last_rx
            if silent >= self.heartbeat.dead_after:
                return self._end(
                    "dead", f"no answer from {self.host} for {self.heartbeat.dead_after:g} s"
                )
            if self.hello is not None and not stale and silent >= self.heartbeat.stale_after:
                stale = True
                samples_at_stale = self.samples
                self.set_state(HostState.STALE, f"no sample from {self.host} for {silent:.0f} s")
            if now >= next_ping:
                next_ping = now + self.heartbeat.ping_interval
                ping_id += 1
                try:
                    stream.write(encode_command("ping", id=ping_id))
                except OSError as exc:
                    return self._end("eof", f"cannot write to the agent: {exc}")

    def _end(self, reason: EndReason, detail: str) -> StreamEnd:
        return StreamEnd(reason, detail, self.hello is not None)

    @staticmethod
    def _shutdown(stream: AgentStream) -> None:
        try:
            stream.write(encode_command("shutdown"))
        except OSError:
            pass

    def _consume(self, buffer: bytearray) -> str:
        """Handle every complete line in ``buffer``; a non-empty result ends the stream."""
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > MAX_LINE_BYTES:
                    return f"the agent on {self.host} sent a line over {MAX_LINE_BYTES} bytes"
                return ""
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if not line.strip():
                continue
            failure = self._on_line(line)
            if failure:
                return failure

    def _on_line(self, line: bytes) -> str:
        try:
            message = decode(line)
        except ProtocolError as exc:
            if self.hello is None:
                # Before hello the other end is not (this version of) our agent at all.
                return f"the agent on {self.host} did not start properly: {exc}"
            self.bad_lines += 1
            log.warning("%s: skipped a bad line from the agent: %s", self.host, exc)
            return ""
        if self.hello is None and not isinstance(message, Hello | AgentError):
            return f"the agent on {self.host} did not say hello first"
        if isinstance(message, TailChunk):
            self._on_tail(message)
        elif isinstance(message, Hello):
            self.hello = message
            self._announce_watches = True
            self.listener.on_hello(self.host, message)
            if message.needs_reboot:
                self.set_state(HostState.NEEDS_REBOOT, message.backend_detail)
        elif isinstance(message, Sample):
            self.samples += 1
            self.listener.on_sample(self.host, message)
            assert self.hello is not None
            if self.hello.needs_reboot:
                self.set_state(HostState.NEEDS_REBOOT, self.hello.backend_detail)
            else:
                self.set_state(HostState.ONLINE, "")
        elif isinstance(message, AgentError):
            if message.fatal:
                return f"the agent on {self.host} failed: {message.message}"
            log.warning("%s: agent reports: %s", self.host, message.message)
        return ""

    def _on_tail(self, chunk: TailChunk) -> None:
        if self.watches is not None:
            self.watches.delivered(chunk)
        if chunk.warning:
            log.warning("%s: %s: %s", self.host, chunk.run_id, chunk.warning)
        try:
            self.listener.on_tail(self.host, chunk)
        except Exception:
            # A broken listener must not end the connection (and with it the samples).
            log.exception("%s: listener failed in on_tail", self.host)
