"""sshd hosts inside a network namespace (``tests.harness.netfault.NetNamespace``), so a
test can cut the network between them and an app that runs in the same namespace.

``start_in`` starts the listener through ``nsenter`` (``SshdHost.spawn``) and waits
until it answers inside the namespace; it is also how such a host's listener is
restarted (the host key is kept).
"""

from __future__ import annotations

import sys
import time

from tests.harness.netfault import NetNamespace
from tests.harness.sshd import SshdHost

# Exit 0 when a TCP connection to argv[1]:argv[2] can be made (run inside the namespace).
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
"""


def start_in(ns: NetNamespace, host: SshdHost, timeout: float = 10.0) -> None:
    """Start ``host``'s sshd inside ``ns``; returns once it accepts connections there.
    A first start makes the host key; a restart keeps it (the app trusts it)."""
    host.spawn(ns.popen)
    assert host.proc is not None
    probe = [sys.executable, "-c", PROBE, host.address, str(host.port)]
    deadline = time.monotonic() + timeout
    while ns.run(probe).returncode != 0:
        if host.proc.poll() is not None:
            raise RuntimeError(f"sshd for {host.name} exited:\n{host.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd for {host.name} did not answer:\n{host.log_text()[-3000:]}")
        time.sleep(0.05)
