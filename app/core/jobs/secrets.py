"""Run secrets: values kept in the OS keyring, named by a job spec, resolved at launch.

A spec lists only the names (``secrets: [WANDB_API_KEY]``); the values live in the
keyring under the service ``labdeck`` and are read each time a run (or a retry of it) is
launched, then travel to the host as data on the SSH channel, never on a command line,
in a file, a log or the store. The keyring has no way to list what it holds, so the
names Labdeck stored are kept in one more keyring entry (``INDEX_KEY``, not a valid
variable name, so it can never clash with a secret).

Nothing here puts a value into an exception, a log line or a ``repr``: messages name the
secret, never its content. ``keyring`` is imported on first use, so a spec without
secrets never loads it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from app.core.jobs.jobspec import ENV_NAME_RE, RESERVED_ENV

SERVICE = "labdeck"
INDEX_KEY = ".labdeck-secret-names"
# A value travels inside one run-control request (runctl reads at most 4 MiB).
MAX_VALUE_BYTES = 64 * 1024
_INSTALL_HINT = (
    "no usable keyring to keep secrets in ({why}). On a Linux desktop start a Secret "
    "Service provider (GNOME Keyring: apt install gnome-keyring; or KWallet) and log in "
    "again; on a headless machine unlock one with `gnome-keyring-daemon --unlock`, or "
    "choose a keyring backend with PYTHON_KEYRING_BACKEND (see `keyring --list-backends`)"
)
# Backends may not be thread-safe (D-Bus connections): one keyring call at a time.
_lock = threading.Lock()
_GONE = object()


class SecretsError(ValueError):
    """A secret cannot be used; ``str()`` says what to do. Never holds a value."""


class SecretsUnavailable(SecretsError):
    """No usable keyring backend (or it refused access)."""


class MissingSecrets(SecretsError):
    """Secrets a run needs are not in the keyring."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        listed = ", ".join(names)
        commands = "; ".join(f"labdeck secrets set {name}" for name in names)
        plural = "s" if len(names) > 1 else ""
        super().__init__(f"secret{plural} {listed} {'are' if plural else 'is'} not set on "
                         f"this computer: set "
                         f"{'them' if plural else 'it'} with `{commands}`")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a secret (one sentence), or None when it can."""
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        return (f"{name!r} is not a valid variable name (letters, digits, _; not starting "
                "with a digit)")
    if name in RESERVED_ENV:
        return f"{name} is set by Labdeck for every run; choose another name"
    return None


def check_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise SecretsError(f"secret name {problem}")
    return name


def _backend() -> Any:
    """The keyring module, once a usable backend is known to be there."""
    try:
        import keyring
        import keyring.errors
        from keyring.backends import fail
    except ImportError as exc:  # a broken install: say so rather than crash
        raise SecretsUnavailable(_INSTALL_HINT.format(why=f"keyring cannot load: {exc}")
                                 ) from None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise SecretsUnavailable(_INSTALL_HINT.format(why="none was found"))
    return keyring


def _call(what: str, method: str, *args: str) -> Any:
    """``keyring.<method>(SERVICE, *args)``; any backend failure (D-Bus gone, keyring
    locked, access refused) becomes SecretsUnavailable naming the error: its type, and
    its text only where no value was passed (a backend might quote what it was given)."""
    with _lock:
        keyring = _backend()
        try:
            return getattr(keyring, method)(SERVICE, *args)
        except keyring.errors.PasswordDeleteError:
            if method == "delete_password":  # nothing stored under that name
                return _GONE
            raise SecretsUnavailable(_INSTALL_HINT.format(why=f"{what} failed")) from None
        except Exception as exc:
            detail = "" if method == "set_password" else f": {exc}"
            raise SecretsUnavailable(
                _INSTALL_HINT.format(why=f"{what}: {type(exc).__name__}{detail}")
            ) from None


def _index() -> list[str]:
    raw = _call("reading the list of secrets", "get_password", INDEX_KEY)
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        names = []
    return sorted({n for n in names if isinstance(n, str) and name_problem(n) is None}) \
        if isinstance(names, list) else []


def _write_index(names: Iterable[str]) -> None:
    _call("updating the list of secrets", "set_password", INDEX_KEY,
          json.dumps(sorted(set(names))))


def set_secret(name: str, value: str) -> None:
    """Store ``value`` under ``name`` (replacing an older one)."""
    check_name(name)
    if not value:
        raise SecretsError(f"secret {name}: the value is empty; nothing was stored")
    if "\0" in value:
        raise SecretsError(f"secret {name}: the value contains a NUL byte, which no "
                           "environment variable can hold; nothing was stored")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SecretsError(f"secret {name}: the value is not valid text; nothing was "
                           "stored") from None
    if size > MAX_VALUE_BYTES:
        raise SecretsError(f"secret {name}: the value is longer than "
                           f"{MAX_VALUE_BYTES // 1024} KiB; nothing was stored")
    _call(f"storing {name}", "set_password", name, value)
    _write_index([*_index(), name])


def delete_secret(name: str) -> bool:
    """Remove ``name``; False when it was not there."""
    check_name(name)
    found = _call(f"removing {name}", "delete_password", name) is not _GONE
    names = _index()
    if name in names:
        _write_index(n for n in names if n != name)
        found = True
    return found


def list_names() -> list[str]:
    """The names of the stored secrets, sorted (values are not read out)."""
    return _index()


def missing(names: Iterable[str]) -> list[str]:
    """Which of ``names`` have no value in the keyring."""
    return [name for name in names
            if not _call(f"reading {name}", "get_password", check_name(name))]


def submit_problems(names: Iterable[str]) -> list[str]:
    """Why runs naming ``names`` should not be queued: secrets that are not set (they
    would only fail at launch), or no usable keyring. Empty when all is well."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    try:
        absent = missing(wanted)
    except SecretsError as exc:
        return [str(exc)]
    return [str(MissingSecrets(absent))] if absent else []


def resolve(names: Iterable[str]) -> dict[str, str]:
    """``{name: value}`` for a launch, read from the keyring now; MissingSecrets naming
    every one that is not set, SecretsUnavailable when no keyring can be used."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    values: dict[str, str] = {}
    absent: list[str] = []
    for name in wanted:
        value = _call(f"reading {name}", "get_password", check_name(name))
        if value:
            values[name] = value
        else:
            absent.append(name)
    if absent:
        raise MissingSecrets(absent)
    return values
