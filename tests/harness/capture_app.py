"""This process as one Labdeck (monitor, dispatcher, ingestor over real sessions) on a
LabApp's home, to stop and start again, or look into, while runs go on; and the jobs that
write their ground truth (tests/integration/capture_job.py, tests/gui/live_capture_job.py),
submitted with the stdlib TFRecord writer they import.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from app.core.events import HostChanged
from app.core.hosts.cluster import ClusterMonitor
from app.core.lab import Lab, known_hosts
from app.core.metrics.ingest import IngestOptions
from app.core.metrics.tailwatch import WatchOptions
from app.core.queue.dispatcher import DispatchOptions
from app.core.store import Store
from ssh_backend.connect import Timeouts
from ssh_backend.events import Session, SessionListener
from ssh_backend.factory import open_session
from ssh_backend.hostspec import HostSpec
from ssh_backend.states import HostState
from tests.harness import tfrecord
from tests.harness.labapp import LabApp

SHORT = Timeouts(connect=3.0, banner=3.0, auth=5.0, channel=5.0, ping_interval=0.5,
                 dead_after=2.5, backoff_initial=0.3, backoff_max=1.0)
INGEST = IngestOptions(refresh_s=0.3, watch=WatchOptions(linger_s=1.5, quiet_s=1.0,
                                                          rewatch_s=1.0))


class CaptureApp:
    """This process as one Labdeck on ``labapp``'s home: start, stop, start again."""

    def __init__(self, labapp: LabApp, monkeypatch: pytest.MonkeyPatch,
                 ingest: IngestOptions = INGEST) -> None:
        monkeypatch.setenv("LABDECK_HOME", str(labapp.home))
        self.labapp = labapp
        self.ingest = ingest
        self.store = Store.open(labapp.store_path)
        self.services: Lab | None = None
        self.ssh_config = labapp.root / "empty_ssh_config"
        self.ssh_config.write_text("")
        self.states: list[HostState] = []
        self._lock = threading.Lock()

    # The host states seen, to tell that a connection was re-made.
    def on_host_changed(self, event: HostChanged) -> None:
        view = self.services.monitor.host(event.host) if self.services else None
        if view is not None:
            with self._lock:
                if not self.states or self.states[-1] is not view.state:
                    self.states.append(view.state)

    def start(self) -> Lab:
        known = known_hosts()

        def factory(spec: HostSpec, listener: SessionListener) -> Session:
            return open_session(spec, listener, known_hosts=known, ssh_config=self.ssh_config,
                                timeouts=SHORT)

        monitor = ClusterMonitor(factory)
        monitor.set_hosts(self.store.hosts())
        self.services = Lab(
            self.store, monitor, dispatch=DispatchOptions(poll_s=0.5), ingest=self.ingest)
        monitor.bus.subscribe(self.on_host_changed, (HostChanged,))
        self.services.start()
        return self.services

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
            self.services = None

    def close(self) -> None:
        self.stop()
        self.store.close()


def submit_job(labapp: LabApp, folder: Path, name: str, job: Path, args: list[str],
               extra_yaml: str = "") -> str:
    """Queue ``job`` (a script for the plain python3) as run ``name`` from a new
    ``folder``, with tfrecord.py beside it; the run id."""
    folder.mkdir()
    shutil.copy(job, folder / job.name)
    shutil.copy(tfrecord.__file__, folder / "tfrecord.py")
    (folder / "job.yaml").write_text(
        f"name: {name}\nscript: {job.name}\nupload: .\nargs: {json.dumps(args)}\n"
        + extra_yaml)
    (run_id,) = labapp.submit(str(folder / "job.yaml"))
    return run_id


def norm(value: Any) -> Any:
    """A value as the jobs write it to truth.json (nan and infinities as text)."""
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
