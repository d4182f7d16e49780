"""known_hosts handling: check a server's key, remember trusted keys, ask on first use.

System files are read line by line so one line paramiko cannot handle (``@cert-authority``,
an unknown key type) skips that line only, where ``HostKeys.load`` rejects the whole file.
``@revoked`` lines are honoured: a key listed there for a host is refused, as by OpenSSH.
A key of a type not listed for a host that has keys of other types is "other_type", not
"unknown": the handshake asks for the listed types first, so a host answering with another
type does not offer its trusted key, and asking to trust the new one would let through an
impostor that lacks the old key.
Trusted keys go to Labdeck's own file, appended as one hashed line each, never rewritten.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

log = logging.getLogger(__name__)

CheckResult = Literal["known", "unknown", "changed", "other_type", "revoked"]


@dataclass(frozen=True, slots=True)
class HostKeyQuestion:
    """What the user is asked before a host key is trusted for the first time."""

    host: str
    port: int
    key_type: str
    fingerprint: str


TrustDecider = Callable[[HostKeyQuestion], bool]


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<base64 without padding>``, exactly as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def question(host: str, port: int, key: paramiko.PKey) -> HostKeyQuestion:
    return HostKeyQuestion(host, port, key.get_name(), fingerprint(key))


def host_label(host: str, port: int) -> str:
    """The name a known_hosts line uses: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _hashed_matches(pattern: str, name: str) -> bool:
    """Does ``|1|salt|hash`` hash ``name``? (HMAC-SHA1 keyed with the salt, as OpenSSH.)"""
    parts = pattern.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2])
        want = base64.b64decode(parts[3])
    except (ValueError, TypeError):
        return False
    got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(got, want)


def _glob(pattern: str, name: str) -> bool:
    """OpenSSH host patterns know only ``*`` and ``?`` (``[`` is literal, as in ``[h]:22``)."""
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()
    )
    return re.fullmatch(regex, name.lower()) is not None


def _names_match(patterns: Sequence[str], name: str) -> bool:
    """OpenSSH host pattern list: any positive match and no negated match."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("|"):
            matched = matched or _hashed_matches(pattern, name)
        elif pattern.startswith("!"):
            if _glob(pattern[1:], name):
                return False
        elif _glob(pattern, name):
            matched = True
    return matched


@dataclass(frozen=True, slots=True)
class _Entry:
    names: tuple[str, ...]
    key: paramiko.PKey
    path: Path
    revoked: bool = False


class KnownHosts:
    """Host keys from the system's known_hosts files plus Labdeck's own, thread-safe.

    Files are re-read when they change on disk, so a key trusted from another process
    (or removed by the user) counts at the next check.
    """

    def __init__(self, app_file: Path, system_files: Sequence[Path] = ()) -> None:
        self.app_file = Path(app_file)
        self.system_files = [Path(p) for p in system_files]
        # "file:line: reason" for each line that was skipped, for a diagnostics view.
        self.skipped: list[str] = []
        self._lock = threading.Lock()
        self._stamps: dict[Path, tuple[int, int] | None] = {}
        self._entries: dict[Path, list[_Entry]] = {}
        self._revoked: dict[Path, list[_Entry]] = {}

    def _files(self) -> list[Path]:
        return [*self.system_files, self.app_file]

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Re-read every file whose size or mtime changed (caller holds the lock)."""
        for path in self._files():
            stamp = self._stamp(path)
            if path in self._stamps and self._stamps[path] == stamp:
                continue
            self._stamps[path] = stamp
            self.skipped = [s for s in self.skipped if not s.startswith(f"{path}:")]
            entries = self._read(path) if stamp is not None else []
            self._entries[path] = [e for e in entries if not e.revoked]
            self._revoked[path] = [e for e in entries if e.revoked]

    def _read(self, path: Path) -> list[_Entry]:
        entries: list[_Entry] = []
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            self.skipped.append(f"{path}:0: cannot read ({exc.strerror or exc})")
            return entries
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{number}"
            revoked = line.startswith("@revoked") and line[8:9].isspace()
            if revoked:
                line = line[8:].strip()
            elif line.startswith("@"):
                marker = line.split(None, 1)[0]
                self.skipped.append(f"{where}: {marker} lines are not supported")
                continue
            try:
                entry = HostKeyEntry.from_line(line, number)
            except (InvalidHostKey, Exception) as exc:  # any bad line skips that line only
                self.skipped.append(f"{where}: bad key data ({type(exc).__name__})")
                continue
            if entry is None or entry.key is None:
                self.skipped.append(f"{where}: not a 'names type key' line or unknown type")
                continue
            entries.append(_Entry(tuple(entry.hostnames), entry.key, path, revoked))
        return entries

    def _matching(self, host: str, port: int, revoked: bool = False) -> list[_Entry]:
        name = host_label(host, port)
        with self._lock:
            self._refresh()
            table = self._revoked if revoked else self._entries
            every = [e for entries in table.values() for e in entries]
        return [e for e in every if _names_match(e.names, name)]

    def check(self, host: str, port: int, key: paramiko.PKey) -> CheckResult:
        """``known``: this key is listed for the host; ``changed``: a different key of the
        same type is; ``other_type``: no key of this type is, but keys of other types are;
        ``unknown``: nothing is listed for the host; ``revoked``: an ``@revoked`` line
        lists this key for the host (whatever else is listed)."""
        if any(e.key == key for e in self._matching(host, port, revoked=True)):
            return "revoked"
        matching = self._matching(host, port)
        if any(e.key == key for e in matching):
            return "known"
        if any(e.key.get_name() == key.get_name() for e in matching):
            return "changed"
        return "other_type" if matching else "unknown"

    def known_types(self, host: str, port: int) -> list[str]:
        """Key types listed for the host, so the handshake can prefer one we can check."""
        types: list[str] = []
        for entry in self._matching(host, port):
            if entry.key.get_name() not in types:
                types.append(entry.key.get_name())
        return types

    def forget_commands(self, host: str, port: int) -> list[str]:
        """``ssh-keygen -R`` commands that remove the host's entries, one per file that
        lists it: the way out after its keys were replaced on purpose (it also finds
        hashed names, which the user cannot search for)."""
        files: list[Path] = []
        for entry in self._matching(host, port):
            if entry.path not in files:
                files.append(entry.path)
        label = shlex.quote(host_label(host, port))
        return [f"ssh-keygen -R {label} -f {shlex.quote(str(path))}" for path in files]

    def add(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Append one hashed line for the host to the app file (0600 in a 0700 folder)."""
        line = f"{paramiko.HostKeys.hash_host(host_label(host, port))} "
        line += f"{key.get_name()} {key.get_base64()}\n"
        with self._lock:
            self.app_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.app_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        log.info("trusted %s %s for %s", key.get_name(), fingerprint(key), host_label(host, port))
