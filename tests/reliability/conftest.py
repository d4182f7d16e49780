"""Every reliability test runs on a saturated machine (see ``tests.harness.burner``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.burner import burning


@pytest.fixture(autouse=True)
def saturated_cpu(saturated_session: bool) -> Iterator[None]:
    if saturated_session:  # --burn: the whole run burns already
        yield
        return
    with burning():
        yield


# A saturated machine runs everything slower: tests without a timeout of their own get
# this instead of the suite's default.
SATURATED_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue  # the hook sees the whole session's tests
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SATURATED_TIMEOUT_S))
