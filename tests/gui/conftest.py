"""GUI tests run offscreen; each checks it left no session or worker thread behind
(tests/conftest.py's ``no_leftover_threads``, with more time: sessions stop through Qt)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def thread_grace_s() -> float:
    # GUI sessions and workers end through the event loop. Before the one check, GUI tests
    # had two back to back: 5 s for Labdeck's own threads, then the suite's 3 s.
    return 8.0
