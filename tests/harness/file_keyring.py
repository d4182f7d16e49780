"""TEST-ONLY keyring backend: values in one private JSON file under a test's tmp dir.

Never shipped (it lives under tests/ and stores values unencrypted). A test selects it
in a subprocess with ``PYTHON_KEYRING_BACKEND=tests.harness.file_keyring.FileKeyring``
and points ``LABDECK_TEST_KEYRING`` at the file; without that variable the backend
declares itself unusable, so it is never picked up by accident. Writes are atomic
(temporary file + rename) under an flock, so the CLI and ``labdeck serve`` can share it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jaraco.classes import properties
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

ENV_VAR = "LABDECK_TEST_KEYRING"
BACKEND = "tests.harness.file_keyring.FileKeyring"


def _path() -> Path:
    where = os.environ.get(ENV_VAR)
    if not where:
        raise RuntimeError(f"{ENV_VAR} is not set")
    return Path(where)


class FileKeyring(KeyringBackend):
    """``{service: {username: password}}`` in the 0600 file ``$LABDECK_TEST_KEYRING``."""

    @properties.classproperty
    def priority(cls) -> float:
        _path()  # raises (not viable) unless a test asked for this backend
        return 0.5

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, str]]]:
        path = _path()
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                data = {}
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                temp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
                out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                with os.fdopen(out, "w", encoding="utf-8") as fh:
                    json.dump(data, fh)
                os.replace(temp, path)
        finally:
            os.close(fd)

    def get_password(self, service: str, username: str) -> str | None:
        with self._locked() as data:
            return data.get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._locked() as data:
            data.setdefault(service, {})[username] = password

    def delete_password(self, service: str, username: str) -> None:
        with self._locked() as data:
            if username not in data.get(service, {}):
                raise PasswordDeleteError(f"{username} is not stored")
            del data[service][username]
