"""Fixtures shared by the whole suite: the sshd lab in a box, the leftover-thread check, and
a private LABDECK_HOME with its store."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.store import Store
from ssh_backend.hostkeys import KnownHosts
from tests.harness.burner import burning
from tests.harness.sshd import SSHD, Lab, SshdLab

__all__ = ["Lab"]  # tests import Lab from here too

THREAD_GRACE_S = 3.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--burn", action="store_true",
                     help="keep every CPU busy with burner processes for the whole run "
                          "(tests.harness.burner; LABDECK_BURN sets how many)")


@pytest.fixture(scope="session", autouse=True)
def saturated_session(request: pytest.FixtureRequest) -> Iterator[bool]:
    """With ``--burn``, the whole suite runs on a saturated machine."""
    if not request.config.getoption("--burn"):
        yield False
        return
    with burning():
        yield True


@pytest.fixture
def thread_grace_s() -> float:
    """How long a test's threads may take to end after it (a folder's conftest may override)."""
    return THREAD_GRACE_S


@pytest.fixture(autouse=True)
def no_leftover_threads(thread_grace_s: float) -> Iterator[None]:
    """Fail a test that leaves threads running (sessions not stopped, readers not joined)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + thread_grace_s
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() >= deadline:
            break
        extra[0].join(0.05)
    if extra:
        pytest.fail(f"test left threads running: {sorted(t.name for t in extra)}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LABDECK_HOME (set in the environment; the store creates the folder)."""
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    """The Store in ``home``, closed after the test."""
    s = Store.open()
    yield s
    s.close()


def _sshd_usable() -> str:
    if not Path(SSHD).exists():
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed (apt-get install openssh-client)"
    return ""


@pytest.fixture(scope="session")
def sshd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdLab]:
    """Factory for real sshd hosts; every sshd and its children die at session end."""
    problem = _sshd_usable()
    if problem:
        pytest.fail(problem)  # the lab tests are the point of the suite: never skip them
    lab = SshdLab(tmp_path_factory.mktemp("sshd-lab"))
    try:
        yield lab
    finally:
        lab.close()


_lab_counter = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def lab(sshd_lab: SshdLab, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """Three fresh hosts per test module, pre-trusted in a temporary app known_hosts."""
    number = next(_lab_counter)
    hosts = [sshd_lab.add_host(f"lab{number}-ws{i}") for i in range(1, 4)]
    known = KnownHosts(tmp_path_factory.mktemp("known") / "known_hosts", [])
    for host in hosts:
        host.trust(known)
    return Lab(hosts=hosts, known_hosts=known, sshd=sshd_lab)
