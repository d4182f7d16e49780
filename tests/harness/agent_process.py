"""Runs the real agent.py as a child process and decodes what it writes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from ssh_backend.protocol import Message, ProtocolError, decode, encode_command

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "ssh_backend" / "agent" / "agent.py"
FAKE_SMI_DIR = ROOT / "tests" / "harness" / "bin"
M = TypeVar("M")


class AgentProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 python: str = sys.executable, script: Path = AGENT) -> None:
        self.proc = subprocess.Popen(
            [python, str(script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
        )
        self.messages: queue.Queue[tuple[float, Message | None]] = queue.Queue()
        self.bad_lines: list[str] = []
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for raw in self.proc.stdout:
            try:
                self.messages.put((time.monotonic(), decode(raw)))
            except ProtocolError as exc:
                self.bad_lines.append(f"{exc}: {raw[:200]!r}")
        self.messages.put((time.monotonic(), None))

    def next(self, kind: type[M], timeout: float = 5.0) -> tuple[float, M]:
        """The next message of ``kind`` (skipping others), with when it arrived."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind.__name__} within {timeout} s{self._why()}")
            try:
                at, message = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError(f"agent closed stdout before a {kind.__name__}{self._why()}")
            if isinstance(message, kind):
                return at, message

    def _why(self) -> str:
        if self.proc.poll() is not None and self.proc.stderr:
            self.stderr += self.proc.stderr.read()
        return f"; stderr: {self.stderr.decode(errors='replace')[-2000:]}" if self.stderr else ""

    def send(self, raw: bytes) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def command(self, kind: str, **fields: object) -> None:
        self.send(encode_command(kind, **fields))

    def close_stdin(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                stream.close()
        self._reader.join(timeout=5)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if kind is None:
            assert not self.bad_lines, self.bad_lines
