"""Network faults for reliability tests: a private network namespace whose loopback link
can be taken down and up while processes inside keep running.

    with NetNamespace() as ns:
        server = ns.popen([...])        # runs inside the namespace
        ns.link_down(); ...; ns.link_up()

A sleeping holder process (``unshare --net``) keeps the namespace alive; commands join it
with ``nsenter --net=/proc/<holder>/ns/net``. Needs root (or CAP_SYS_ADMIN).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any


def unavailable_reason() -> str:
    """Why network namespaces cannot be used here ('' when they can)."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux / iproute2)"
    probe = subprocess.run(
        ["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
        capture_output=True, text=True, timeout=10,
    )
    if probe.returncode != 0:
        return f"unshare --net is not permitted here: {probe.stderr.strip()}"
    return ""


class NetNamespace:
    """A network namespace with only ``lo`` in it, up at start."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c",
             "ip link set lo up && echo ready && exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError("could not create a network namespace")

    @property
    def path(self) -> Path:
        return Path(f"/proc/{self.holder.pid}/ns/net")

    def argv(self, command: list[str]) -> list[str]:
        """``command`` wrapped to run inside the namespace."""
        return ["nsenter", f"--net={self.path}", "--", *command]

    def run(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.argv(command), **kwargs)

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(command), **kwargs)

    def _link(self, state: str) -> None:
        self.run(["ip", "link", "set", "lo", state], check=True, capture_output=True)

    def link_down(self) -> None:
        """Cut the network: packets on lo are dropped, sockets stay open."""
        self._link("down")

    def link_up(self) -> None:
        self._link("up")

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(5)
        for pipe in (self.holder.stdout, self.holder.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> NetNamespace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
