"""Every reliability test runs on a saturated machine (see ``tests.harness.burner``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.burner import burning


@pytest.fixture(autouse=True)
def saturated_cpu(saturated_session: bool) -> Iterator[None]:
    if saturated_session:  # --burn: the whole run burns already
        yield
        return
    with burning():
        yield
