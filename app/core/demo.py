"""The demo lab: three simulated workstations on this machine, another user on some of
their GPUs, and a first sweep of short training runs, in a Labdeck home of its own.

Everything real but the GPUs: the hosts are local sessions running the real agent with
the simulated GPU backend (replaying the H100 recording, so every host has H100s and is
named by role, not by model), the runs are real processes started by the real wrapper
through the real dispatcher, and their curves come through the real ingest path. The
"other user" is a real sleeping process that the simulated backend lists on its GPUs.
"""

from __future__ import annotations

import getpass
import logging
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import platformdirs

from app.core import paths
from app.core.hosts.cluster import HostView
from app.core.hosts.registry import spec_from_args
from app.core.jobs.jobspec import JobSpec, spec_from_script
from app.core.jobs.sweep import expand_grid, sweep_name
from app.core.lab import LOCAL_HOST_HOMES_KEY
from app.core.queue.gpufree import Policy, gpu_busy_reason
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.demo import OTHER_USER_SCRIPT, TRAIN_SCRIPT
from ssh_backend.hostspec import HostSpec
from ssh_backend.local import agent_python

log = logging.getLogger(__name__)

PREPARED_KEY = "demo.prepared"
SPEED_ENV = "LABDECK_DEMO_SPEED"  # read by the demo's training script (a factor > 1)
OTHER_USER = "alice"
STOP_GRACE_S = 3.0


@dataclass(frozen=True, slots=True)
class DemoHost:
    name: str
    gpus: int
    other_user_gpus: tuple[int, ...] = ()


DEMO_HOSTS = (
    DemoHost("team-box", 4, other_user_gpus=(0, 1)),
    DemoHost("dev-box", 2),
    DemoHost("big-box", 8, other_user_gpus=(6, 7)),
)
# The first sweep: lr × seed, 25 steps an epoch at 0.2 s a step (at speed 1), fewer
# epochs for the larger rates, so the first runs finish in ~10 s and the last in ~60 s.
SWEEP_GRID: dict[str, list[float | int]] = {"lr": [1.0, 0.3, 0.1], "seed": [1, 2]}
SWEEP_EPOCHS = {1.0: 2, 0.3: 5, 0.1: 12}
STEPS_PER_EPOCH = 25
STEP_SLEEP_S = 0.2
LONG_EPOCHS = 24  # two runs of ~2 min, and a 4-GPU run that waits for a host to free up
WIDE_EPOCHS = 12


def demo_home() -> Path:
    """The demo lab's own Labdeck home, beside (never inside) the user's real one."""
    return Path(platformdirs.user_data_dir(paths.APP_NAME)) / "demo"


def use_demo_home() -> Path:
    """Point ``LABDECK_HOME`` at the demo home unless it was set explicitly; returns it."""
    if not os.environ.get("LABDECK_HOME"):
        os.environ["LABDECK_HOME"] = str(demo_home())
    return paths.home()


def job_python() -> str:
    """The interpreter for the demo's jobs: the one the local agent uses."""
    return agent_python()


def host_specs() -> list[HostSpec]:
    return [spec_from_args(h.name, local=True, sim_gpus=h.gpus) for h in DEMO_HOSTS]


def _train_spec(name: str, gpus: int, tags: tuple[str, ...], **params: float | int) -> JobSpec:
    args: list[str] = []
    for key, value in params.items():
        args += [f"--{key.replace('_', '-')}", f"{value:g}"]
    spec = spec_from_script(TRAIN_SCRIPT, args, name=name, gpus=gpus, tags=tags)
    return replace(spec, argv=(job_python(), *spec.argv[1:]))


def first_sweep() -> list[JobSpec]:
    """What the demo queues on its first start, in queue order."""
    specs = []
    for combo in expand_grid(SWEEP_GRID):
        lr = float(combo["lr"])
        specs.append(_train_spec(
            sweep_name("sweep", combo), 1, ("demo", "sweep"), lr=lr, seed=int(combo["seed"]),
            epochs=SWEEP_EPOCHS[lr], steps_per_epoch=STEPS_PER_EPOCH, sleep=STEP_SLEEP_S))
    for seed in (1, 2):
        specs.append(_train_spec(
            f"long-seed={seed}", 1, ("demo", "long"), lr=0.3, seed=seed, epochs=LONG_EPOCHS,
            steps_per_epoch=STEPS_PER_EPOCH, sleep=STEP_SLEEP_S))
    specs.append(_train_spec(
        "wide-4gpu", 4, ("demo", "multi-gpu"), lr=0.3, seed=3, epochs=WIDE_EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH, sleep=STEP_SLEEP_S))
    return specs


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "demo"


@dataclass
class DemoLab:
    """A prepared demo: its hosts, the runs it queued now, the other user's processes."""

    hosts: list[HostSpec]
    queued: list[str]
    other_user: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def other_user_pids(self) -> list[int]:
        return [p.pid for p in self.other_user]

    def stop(self) -> None:
        """End the other user's processes (TERM, then KILL); the runs end by themselves."""
        for process in self.other_user:
            if process.poll() is None:
                process.terminate()
        for process in self.other_user:
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.other_user.clear()

    def __enter__(self) -> DemoLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_other_user(host: str, gpus: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """The other user's job on ``host``'s simulated ``gpus``: a real process the simulated
    backend lists there (as ``OTHER_USER``), so the scheduler must leave those GPUs alone."""
    env = dict(os.environ)
    env.update(LABDECK_SIM_GPUS=",".join(str(i) for i in gpus), LABDECK_SIM_HOST=host,
               LABDECK_SIM_USER=OTHER_USER)
    return subprocess.Popen(
        [job_python(), str(OTHER_USER_SCRIPT), "--owner", OTHER_USER],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, close_fds=True,
    )


def prepare_demo(store: Store) -> DemoLab:
    """Register the demo hosts and queue the first sweep (first start only), and start the
    other user's processes (every start). Call before the services start, so the first
    GPU readings already show the other user; call ``DemoLab.stop()`` when done."""
    known = {h.name for h in store.hosts()}
    first = not store.get_setting(PREPARED_KEY)
    specs = host_specs()
    if first:
        store.set_setting(LOCAL_HOST_HOMES_KEY, str(paths.home() / "hosts"))
        for spec in specs:
            if spec.name not in known:
                store.add_host(spec, tags=["demo"])
    queued: list[str] = []
    if first:
        queued = RunStore(store).submit([s.to_dict() for s in first_sweep()], _user())
        store.set_setting(PREPARED_KEY, True)
        log.info("demo lab prepared: %d hosts, %d runs queued", len(specs), len(queued))
    lab = DemoLab(hosts=[s for s in store.hosts() if s.name in {h.name for h in DEMO_HOSTS}],
                  queued=queued)
    try:
        for host in DEMO_HOSTS:
            if host.other_user_gpus:
                lab.other_user.append(start_other_user(host.name, host.other_user_gpus))
    except OSError:
        lab.stop()
        raise
    return lab


def gpu_counts(views: Iterable[HostView]) -> tuple[int, int, int]:
    """(busy, free, running a demo training run) over the GPUs of ``views`` now."""
    busy = free = training = 0
    for view in views:
        for gpu in view.sample.gpus if view.sample else ():
            # The scheduler's own rule (the demo lab has no reservations).
            if gpu_busy_reason(view, gpu, (), (), Policy()) is None:
                free += 1
            else:
                busy += 1
            if any(TRAIN_SCRIPT.name in (p.command or "") for p in gpu.processes):
                training += 1
    return busy, free, training
