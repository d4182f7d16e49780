"""Pick the session class for a HostSpec: LocalSession for this machine, else SSH."""

from __future__ import annotations

from pathlib import Path

from ssh_backend.connect import Timeouts
from ssh_backend.events import Session, SessionListener
from ssh_backend.hostkeys import KnownHosts, TrustDecider
from ssh_backend.hostspec import HostSpec
from ssh_backend.local import LocalSession
from ssh_backend.session import HostSession


def open_session(
    spec: HostSpec,
    listener: SessionListener,
    *,
    known_hosts: KnownHosts,
    trust: TrustDecider | None = None,
    ssh_config: Path | None = None,
    timeouts: Timeouts | None = None,
    local_home: Path | None = None,
) -> Session:
    """A not yet started session for ``spec``; call ``start()`` on it.

    ``local_home`` gives a local host its own HOME (the demo lab keeps its workstations'
    run folders apart from the user's real ``~/.labdeck``); None inherits this HOME.
    """
    if spec.local:
        return LocalSession(spec, listener, timeouts=timeouts, home=local_home)
    return HostSession(
        spec,
        listener,
        known_hosts=known_hosts,
        trust=trust,
        ssh_config=ssh_config,
        timeouts=timeouts,
    )
