"""Smoke test of the network-fault helper: lo down cuts a namespace off, lo up restores it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.harness.netfault import NetNamespace, unavailable_reason

pytestmark = [pytest.mark.netns]

# Inside the namespace: listen on 127.0.0.1, then try to connect to it (2 s timeout).
PROBE = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
try:
    socket.create_connection(server.getsockname(), timeout=2).close()
    print("connected")
except OSError as exc:
    print("failed", exc)
"""


@pytest.fixture
def namespace() -> Iterator[NetNamespace]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    ns = NetNamespace()
    yield ns
    ns.close()


def _probe(ns: NetNamespace) -> str:
    done = ns.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.timeout(30)
def test_link_down_cuts_loopback_and_link_up_restores_it(namespace: NetNamespace) -> None:
    assert _probe(namespace) == "connected"
    namespace.link_down()
    assert _probe(namespace).startswith("failed")
    namespace.link_up()
    assert _probe(namespace) == "connected"
    # The namespace is private: the host's own loopback is untouched meanwhile.
    assert subprocess.run(["ip", "link", "show", "lo"], capture_output=True, text=True,
                          check=True).stdout.count("UP") >= 1
