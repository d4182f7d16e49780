"""sshd hosts inside a network namespace (``tests.harness.netfault.NetNamespace``), so a
test can cut the network between them and an app that runs in the same namespace.

``start_in`` does what ``SshdHost.start`` does, with the listener started through
``nsenter``; it is also how such a host's listener is restarted (the host key is kept).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.harness.netfault import NetNamespace
from tests.harness.sshd import SSHD, SshdHost, generate_key

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
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    host.home.mkdir(parents=True, exist_ok=True)
    if not host.host_key_path.exists():
        generate_key(host.host_key_path)
    pub = host.client_key.with_name(host.client_key.name + ".pub").read_text()
    (host.root / "authorized_keys").write_text(pub)
    host._write_config()
    with host.log_path.open("ab") as log:
        host.proc = ns.popen([SSHD, "-D", "-e", "-f", str(host.config_path)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    host.known_pids.add(host.proc.pid)
    probe = [sys.executable, "-c", PROBE, host.address, str(host.port)]
    deadline = time.monotonic() + timeout
    while ns.run(probe).returncode != 0:
        if host.proc.poll() is not None:
            raise RuntimeError(f"sshd for {host.name} exited:\n{host.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd for {host.name} did not answer:\n{host.log_text()[-3000:]}")
        time.sleep(0.05)
