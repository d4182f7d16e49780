"""Ask the OpenSSH client how it would connect: ``ssh -G``, the resolution ssh itself uses.

``ssh -G`` applies every rule of ssh_config (Match, tokens, canonicalisation, first value
wins, Includes inside blocks…) and prints the result as lower-case ``key value`` lines;
VS Code's Remote-SSH resolves hosts the same way. It may run the user's own ``Match exec``
commands, as ssh does. Answers are cached briefly, keyed by the files' modification times.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from ssh_backend.sshconf_lines import ConfigError, files_read, load_lines

SSH_G_TIMEOUT_S = 10.0
# A Match exec may test the network, so an answer is reused only briefly: long enough
# for one listing of many hosts, short enough for the next reconnect to see a change.
CACHE_TTL_S = 30.0
_CACHE_MAX = 1024
_ERROR_LINE = re.compile(r"^(?P<path>.+?):? line (?P<line>\d+): (?P<problem>.+)$")

Options = dict[str, list[str]]


def find_ssh() -> str | None:
    """The OpenSSH client on PATH, or None (then the paramiko fallback resolves hosts)."""
    return shutil.which("ssh")


def _default_config() -> Path:
    # ssh reads the passwd entry's home, not $HOME, for its own ~/.ssh/config.
    import pwd

    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        home = os.path.expanduser("~")
    return Path(home) / ".ssh" / "config"


def config_args(config: Path | None) -> list[str]:
    """``-F`` for a specific file; none for the user's own (so /etc/ssh/ssh_config applies
    too, as for a plain ``ssh``); ``-F none`` for no file or a missing one."""
    if config is not None and config == _default_config():
        return []
    if config is None or not config.exists():
        return ["-F", "none"]
    return ["-F", str(config)]


class _Cache:
    """Answers by (command, files' mtimes and sizes); entries live CACHE_TTL_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[object, ...], tuple[float, Options]] = {}

    def get(self, key: tuple[object, ...]) -> Options | None:
        with self._lock:
            hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] > CACHE_TTL_S:
            return None
        return hit[1]

    def put(self, key: tuple[object, ...], options: Options) -> None:
        with self._lock:
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), options)


_cache = _Cache()


def _signature(config: Path | None) -> tuple[tuple[str, int, int], ...]:
    if config is None or not config.exists():
        return ()
    # Reading the files also refuses an Include fan-out before ssh would spend minutes.
    stamps = []
    for path in files_read(load_lines(config), config):
        try:
            st = path.stat()
        except OSError:
            continue
        stamps.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def ssh_options(ssh: str, config: Path | None, host: str, *, user: str | None = None,
                port: int | None = None) -> Options:
    """What ``ssh -G [-F config] [-l user] [-p port] host`` prints, key → values.

    Raises ConfigError (file and line when ssh names them) when ssh refuses the config.
    """
    if not host or host.startswith("-"):
        raise ConfigError(config or "ssh config", 0, f"not a host name: {host!r}")
    argv = [ssh, "-G", *config_args(config)]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    argv += ["--", host]
    key = (tuple(argv), _signature(config))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    options = _run(argv, config)
    _cache.put(key, options)
    return options


def _run(argv: list[str], config: Path | None) -> Options:
    try:
        # A session of its own: on timeout the Match exec commands ssh started die too.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise ConfigError(config or "ssh config", 0,
                          f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=SSH_G_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ConfigError(config or "ssh config", 0,
                          f"ssh -G did not answer within {SSH_G_TIMEOUT_S:g} s (a Match "
                          "exec command that waits?)") from None
    if proc.returncode != 0:
        raise _error(stderr.decode("utf-8", "replace"), config)
    return parse_output(stdout.decode("utf-8", "replace"))


def parse_output(text: str) -> Options:
    """``ssh -G`` lines → key → values (IdentityFile and a few others appear repeatedly)."""
    options: Options = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            options.setdefault(key, []).append(value)
    return options


def _error(stderr: str, config: Path | None) -> ConfigError:
    """ssh's own complaint, as a ConfigError naming the file and line when ssh did."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()
             and not ln.startswith("Pseudo-terminal")]
    for line in lines:
        found = _ERROR_LINE.match(line)
        if found:
            return ConfigError(found["path"], int(found["line"]), found["problem"])
    return ConfigError(config or "ssh config", 0,
                       "ssh -G refused it: " + ("; ".join(lines) or "no reason given"))


@functools.cache
def default_identity_files(ssh: str) -> tuple[str, ...]:
    """The IdentityFile list ssh prints when none is configured (its default key names):
    such a list means "the defaults", which Labdeck's connector looks for itself."""
    return tuple(_run([ssh, "-G", "-F", "none", "--", "labdeck-defaults"], None)
                 .get("identityfile", []))
