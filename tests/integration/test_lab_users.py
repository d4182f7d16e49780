"""Real distinct Unix users share the lab's hosts: three users made with ``useradd``, each
with their own key and their own Labdeck (own LABDECK_HOME), dispatch to the same two
sshd hosts at once: all under umask 022, all under 077, and each under one of their own
(022, 077, 027) on hosts whose default is 022.

The verdict comes from the hosts: every run folder of every user (``read_host_records``
with that user's HOME) says which GPU each job had and when, so per GPU uuid no two
intervals of any users may meet; every run started exactly once and ended with exit 0;
each ran as its user under that user's umask (the kernel's word: folder owners, and the
Uid/Umask lines of /proc/PID/status that each job wrote down for itself and its wrapper,
and that the test sampled for the agents and wrappers while they ran).
"""

from __future__ import annotations

import json
import stat
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.queue.runs import RunState
from tests.harness.gpu_intervals import HostRecords, overlaps, read_host_records, sweep_file
from tests.harness.labapp import LabApp, base_run_id, run_dirs
from tests.harness.sshd import SshdHost, SshdLab
from tests.harness.unixusers import LabUser, UnixUsers, all_pids, cmdline_of, uids_of, umask_of

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

USERS = 3
RUNS_PER_USER = 15
# Records its start and end (as ``gpu_intervals.JOB_CODE`` does) and, from the kernel,
# the uid and umask of itself and of its parent, the wrapper.
JOB_CODE = """\
import json, os, time
t0 = time.time()
folder = os.environ['LABDECK_RUN_DIR']
def status(pid):
    with open('/proc/%s/status' % pid) as fh:
        lines = [line.split(':', 1) for line in fh.read().splitlines()]
    return {k: v.strip() for k, v in lines if k in ('Uid', 'Umask')}
with open('/proc/%d/cmdline' % os.getppid(), 'rb') as fh:
    parent = fh.read().decode('utf-8', 'replace').split('\\0')
with open(os.path.join(folder, 'ident'), 'w') as fh:
    json.dump({'job': status('self'), 'wrapper': status(os.getppid()), 'parent': parent}, fh)
time.sleep(0.2)
with open(os.path.join(folder, 'times'), 'w') as fh:
    fh.write('%r %r' % (t0, time.time()))
"""


# The hosts' umask (their sshd's, which sftp keeps) and each user's (their ~/.bashrc).
UMASKS = {
    "umask022": (0o022, (0o022, 0o022, 0o022)),
    "umask077": (0o077, (0o077, 0o077, 0o077)),
    "mixed": (0o022, (0o022, 0o077, 0o027)),
}


@dataclass
class UsersLab:
    """The users and the hosts they all log into; ``name`` says whose umask is what."""

    name: str
    users: list[LabUser]
    hosts: list[SshdHost]


@pytest.fixture(scope="module", params=sorted(UMASKS))
def users_lab(request: pytest.FixtureRequest) -> Iterator[UsersLab]:
    """Three users and two hosts, with the umasks of the parameter."""
    host_umask, user_umasks = UMASKS[request.param]
    with UnixUsers() as made:
        sshd = SshdLab(made.folder("sshd"))
        try:
            users = [made.add(umask) for umask in user_umasks]
            hosts = []
            for number in (1, 2):
                host = sshd.add_host(f"ws{number}", start=False)
                host.umask = host_umask
                for user in users:
                    made.admit(host, user)
                host.start()
                hosts.append(host)
            yield UsersLab(name=request.param, users=users, hosts=hosts)
        finally:
            sshd.close()


def sample_umasks(users: list[LabUser], seen: dict[tuple[str, str], set[int]]) -> None:
    """Record the umask of each user's live agents, runctls and wrappers (by script)."""
    names = {user.uid: user.name for user in users}
    for pid in all_pids():
        owners = uids_of(pid) & names.keys()
        if not owners:
            continue
        argv = cmdline_of(pid)
        script = next((Path(arg).name for arg in argv if arg.endswith(".py")), "")
        umask = umask_of(pid)
        if script in ("agent.py", "wrapper.py", "runctl.py") and umask is not None:
            seen[(names[owners.pop()], script)].add(umask)


def folders(users: list[LabUser], hosts: list[SshdHost]) -> dict[str, dict[str, set[str]]]:
    """User → host → the run folder names there (runs of the module's earlier tests)."""
    return {user.name: {host.name: set(run_dirs(host, user.home_on(host))) for host in hosts}
            for user in users}


@pytest.mark.timeout(300)
def test_three_unix_users_share_two_hosts_never_a_gpu(
    tmp_path: Path, users_lab: UsersLab
) -> None:
    users, hosts = users_lab.users, users_lab.hosts
    before = folders(users, hosts)
    apps = {user.name: LabApp(tmp_path / user.name, hosts, spec=user.spec) for user in users}
    submitted: dict[str, set[str]] = {}
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    started = time.monotonic()
    try:
        for user in users:
            sweep = sweep_file(tmp_path / f"{user.name}.yaml", user.name, RUNS_PER_USER,
                               JOB_CODE)
            submitted[user.name] = set(apps[user.name].submit(str(sweep)))
            assert len(submitted[user.name]) == RUNS_PER_USER
        serves = {name: app.serve("--until-done", "--poll", "1") for name, app in apps.items()}
        deadline = time.monotonic() + 240
        while any(serve.poll() is None for serve in serves.values()):
            assert time.monotonic() < deadline, "the users' serves did not finish in 240 s"
            sample_umasks(users, seen)
            time.sleep(0.2)
        took = time.monotonic() - started
        for name, serve in serves.items():
            assert serve.returncode == 0, apps[name].serve_output()[-3000:]
        refused = sum(app.serve_output().count("launch refused") for app in apps.values())
        for name, app in apps.items():
            bad = [(run.id, run.state, run.exit_code, run.reason) for run in app.runs()
                   if run.state is not RunState.SUCCEEDED or run.exit_code != 0]
            assert bad == [], name
    finally:
        for app in apps.values():
            app.close()

    # What the hosts recorded, user by user (their own HOME on each host).
    merged = HostRecords()
    by_host: dict[str, dict[str, HostRecords]] = defaultdict(dict)
    for user in users:
        old = before[user.name]
        mine = read_host_records(hosts, skip=old, home=user.home_on)
        assert set(mine.ran) == submitted[user.name], user.name
        assert mine.duplicates() == [], user.name
        assert mine.failed() == {}, user.name
        for intervals, into in ((mine.jobs, merged.jobs), (mine.wrappers, merged.wrappers)):
            for uuid, spans in intervals.items():
                into[uuid] += [(s, e, f"{user.name}/{run}") for s, e, run in spans]
        for host in hosts:
            by_host[host.name][user.name] = read_host_records([host], old, user.home_on)
    found = overlaps(merged.jobs) + overlaps(merged.wrappers)
    assert found == []
    assert len(merged.jobs) == 8  # both hosts' four GPUs were used

    # Every run ran as its user, under that user's umask, in a folder closed to others.
    launches: list[tuple[str, float, str]] = []  # GPU uuid, when runctl wrote job.json, user
    for user in users:
        for host in hosts:
            for name, folder in run_dirs(host, user.home_on(host)).items():
                if name in before[user.name][host.name] or not (folder / "state.json").exists():
                    continue  # an earlier test's, or a refused launch: nothing ran
                assert base_run_id(name) in submitted[user.name]
                job = folder / "job.json"
                launches += [(uuid, job.stat().st_mtime, user.name)
                             for uuid in json.loads(job.read_text())["gpu_uuids"]]
                info = folder.stat()
                assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.uid, 0o700), folder
                assert (folder / "state.json").stat().st_uid == user.uid
                ident = json.loads((folder / "ident").read_text())
                for who in ("job", "wrapper"):
                    assert {int(u) for u in ident[who]["Uid"].split()} == {user.uid}, folder
                    assert int(ident[who]["Umask"], 8) == user.umask, (who, folder)
                assert any(arg.endswith("/wrapper.py") for arg in ident["parent"]), ident
                # A file the job made with open()'s default mode shows the umask too.
                times = (folder / "times").stat()
                assert (times.st_uid, stat.S_IMODE(times.st_mode)) == (
                    user.uid, 0o666 & ~user.umask)
        # The kernel's word for the user's agent, sampled while it ran.
        assert seen[(user.name, "agent.py")] == {user.umask}, dict(seen)
    # And for every agent, runctl and wrapper of anyone that the samples caught.
    umask_of_user = {user.name: user.umask for user in users}
    assert {key: umasks for key, umasks in seen.items()
            if umasks != {umask_of_user[key[0]]}} == {}

    # The hosts' GPUs served more than one user.
    users_per_host = {
        host: sorted(name for name, found in per_user.items() if found.jobs)
        for host, per_user in by_host.items()
    }
    # Users really shared the hosts: with lab-wide fair share a host may end up serving
    # one user in a run, so this asks it of the lab, not of every host.
    assert any(len(names) > 1 for names in users_per_host.values()), users_per_host
    users_per_gpu = {
        uuid: len({run.split("/")[0] for _s, _e, run in spans})
        for uuid, spans in merged.jobs.items()
    }
    # Launches onto a GPU whose lease another user's run still held: the schedulers did
    # not keep these apart, the lease did (the wrapper waited for it).
    contended = sum(
        any(began <= launched < ended and not run.startswith(who + "/")
            for began, ended, run in merged.wrappers[uuid])
        for uuid, launched, who in launches
    )
    runs = sum(len(ids) for ids in submitted.values())
    print(f"\n{users_lab.name}: {USERS} users, {runs} runs on {len(merged.jobs)} GPUs of "
          f"{len(hosts)} hosts in {took:.1f} s; {contended} launches onto a GPU another "
          f"user's run held; {refused} launches refused by a lease; "
          f"{len(found)} overlaps; 0 duplicates; users per host {users_per_host}; "
          f"users per GPU {sorted(users_per_gpu.values())}; "
          f"umasks seen {sorted((k, [f'{m:04o}' for m in v]) for k, v in seen.items())}")


# Run as another user: what each path gives them, "ok" or the errno's name.
PROBE = """\
import errno, json, os, sys
found = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, 'rb').read()
        found[path] = 'ok'
    except OSError as exc:
        found[path] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(found))
"""


@pytest.mark.timeout(120)
def test_a_users_run_folder_is_closed_to_the_other_users(
    tmp_path: Path, users_lab: UsersLab
) -> None:
    owner, *others = users_lab.users
    host = users_lab.hosts[0]
    job = tmp_path / "secret.yaml"
    job.write_text(f"name: secret\ncommand: [python3, -c, \"print('secret of {owner.name}')\"]\n")
    app = LabApp(tmp_path / "owner", [host], spec=owner.spec)
    try:
        (run_id,) = app.submit(str(job))
        code = app.serve("--until-done", "--poll", "1").wait(90)
        assert code == 0, app.serve_output()[-3000:]
    finally:
        app.close()
    home = owner.home_on(host)
    (folder,) = [path for name, path in run_dirs(host, home).items()
                 if base_run_id(name) == run_id]
    info = folder.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (owner.uid, 0o700)
    # Whatever the umask, nothing Labdeck wrote in it is open to group or others.
    loose = {str(path.relative_to(folder)): f"{stat.S_IMODE(path.stat().st_mode):04o}"
             for path in folder.rglob("*") if path.stat().st_mode & 0o077}
    assert loose == {}
    log = folder / "output.log"
    assert f"secret of {owner.name}" in log.read_text()
    chain = [home / ".labdeck", home / ".labdeck" / "runs", folder, log]
    argv = ["python3", "-c", PROBE, *map(str, chain)]
    # The owner reads all of it (the probe works) ...
    mine = owner.run(argv, check=True)
    assert set(json.loads(mine.stdout).values()) == {"ok"}
    # ... the other users none of it: the kernel refuses them the run folder and its log.
    for other in others:
        theirs = json.loads(other.run(argv, check=True).stdout)
        assert theirs[str(folder)] == "EACCES" and theirs[str(log)] == "EACCES", theirs
    print(f"\n{users_lab.name}: {owner.name}'s run folder as seen by another user: "
          f"{ {str(Path(p).relative_to(home)): r for p, r in theirs.items()} }")
