"""``labdeck hosts …``: add, import, list, remove hosts, and trust a host's key."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from app.cli.common import UsageError, say, table, warn
from ssh_backend.states import HostState

# The store (sqlite_utils) and the host helpers (paramiko) are imported by the actions
# that use them: ``labdeck --help`` builds this parser and must not load them.
if TYPE_CHECKING:
    from app.core.hosts.cluster import ClusterMonitor
    from ssh_backend.hostkeys import HostKeyQuestion
    from ssh_backend.hostspec import HostSpec

TRUST_TIMEOUT_S = 20.0
# How long a connection may wait for the user's y/N before it gives up on the key.
ANSWER_TIMEOUT_S = 600.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("hosts", help="add, list, remove hosts; trust a host's key")
    sub = parser.add_subparsers(dest="hosts_command", metavar="ACTION", required=True)

    add = sub.add_parser(
        "add",
        help="add a host",
        description="Add a host reached over SSH (or this machine with --local).",
    )
    add.add_argument("name", metavar="NAME", help="the name Labdeck shows for the host")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--ssh", metavar="[USER@]HOST[:PORT]", help="where to connect")
    how.add_argument("--local", action="store_true", help="this machine, without SSH")
    add.add_argument(
        "--ssh-alias",
        metavar="ALIAS",
        help="a Host of ~/.ssh/config to take settings from (read at every connect)",
    )
    add.add_argument("--key", metavar="PATH", help="private key file to log in with")
    add.add_argument(
        "--jump",
        action="append",
        default=[],
        metavar="[USER@]HOST[:PORT]",
        help="jump host (ProxyJump); repeat for a chain, first hop first",
    )
    add.add_argument(
        "--interval", type=float, metavar="S", help="seconds between GPU readings (default 1)"
    )
    # Demo lab and tests: replay recorded GPUs instead of reading real ones.
    add.add_argument("--simulate-gpus", type=int, metavar="N", help=argparse.SUPPRESS)
    add.set_defaults(run=_add)

    imp = sub.add_parser(
        "import-ssh-config",
        help="add every Host of an ssh config",
        description="Add a Labdeck host for every concrete Host alias of an ssh config.",
    )
    imp.add_argument("--config", metavar="PATH", help="the config to read (default ~/.ssh/config)")
    imp.set_defaults(run=_import)

    ls = sub.add_parser("ls", help="list hosts")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(run=_ls)

    rm = sub.add_parser("rm", help="remove a host")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=_rm)

    trust = sub.add_parser(
        "trust",
        help="connect, show the host key's fingerprint, and trust it",
        description="Connect to NAME, show each unknown host key (type and SHA256 "
        "fingerprint) and ask whether to trust it. A CHANGED key is never accepted.",
    )
    trust.add_argument("name", metavar="NAME")
    trust.add_argument(
        "--yes", action="store_true", help="accept the key without asking (prints it)"
    )
    trust.add_argument(
        "--timeout",
        type=float,
        default=TRUST_TIMEOUT_S,
        metavar="S",
        help=f"give up after S seconds (default {TRUST_TIMEOUT_S:g})",
    )
    trust.set_defaults(run=_trust)


def _add(args: argparse.Namespace) -> int:
    from app.core.hosts import registry as hosts
    from app.core.store import Store

    try:
        spec = hosts.spec_from_args(
            args.name,
            args.ssh,
            args.key,
            jump=args.jump,
            ssh_alias=args.ssh_alias,
            local=args.local,
            sim_gpus=args.simulate_gpus,
            interval_s=args.interval,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with Store.open() as store:
        store.add_host(spec)
    say(f"added {spec.name}: {hosts.describe_target(spec)}" + _sim_note(spec))
    if not spec.local:
        say(f"next: check and trust its host key with: labdeck hosts trust {spec.name}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from app.core.hosts import registry as hosts
    from app.core.store import Store

    with Store.open() as store:
        result = hosts.import_from_ssh_config(store, args.config)
    for name in result.added:
        say(f"added {name}: {result.targets[name]}")
    if result.skipped_existing:
        say(f"already known, skipped: {', '.join(result.skipped_existing)}")
    for error in result.errors:
        warn(error)
    if not result.added and not result.skipped_existing and not result.errors:
        say("no Host entries to import")
    return 1 if result.errors else 0


def _ls(args: argparse.Namespace) -> int:
    from app.core.hosts import registry as hosts
    from app.core.store import Store

    with Store.open() as store:
        specs = store.hosts()
    if args.json:
        say(json.dumps({"hosts": [_host_json(s) for s in specs]}, indent=2))
        return 0
    if not specs:
        say("no hosts yet; add one with: labdeck hosts add NAME --ssh user@host")
        return 0
    rows = [
        [
            s.name,
            hosts.describe_target(s),
            ", ".join(s.proxy_jump) or "-",
            s.key_filename or "-",
            f"sim {s.agent.sim_gpus} GPUs" if s.simulated else s.agent.backend,
            f"{s.agent.interval_s:g} s",
        ]
        for s in specs
    ]
    say(table(rows, ["NAME", "TARGET", "JUMP", "KEY", "GPUS", "EVERY"]))
    return 0


def _rm(args: argparse.Namespace) -> int:
    from app.core.store import Store

    with Store.open() as store:
        store.remove_host(args.name)
    say(f"removed {args.name}")
    return 0


def _host_json(spec: HostSpec) -> dict[str, Any]:
    from app.core.hosts import registry as hosts

    return {
        "name": spec.name,
        "target": hosts.describe_target(spec),
        "user": spec.user,
        "hostname": spec.hostname,
        "port": spec.port,
        "ssh_alias": spec.ssh_alias,
        "key_filename": spec.key_filename,
        "proxy_jump": list(spec.proxy_jump),
        "local": spec.local,
        "backend": spec.agent.backend,
        "sim_gpus": spec.agent.sim_gpus,
        "interval_s": spec.agent.interval_s,
        "simulated": spec.simulated,
    }


def _sim_note(spec: HostSpec) -> str:
    return f" (simulated, {spec.agent.sim_gpus} GPUs)" if spec.simulated else ""


# -- trust ---------------------------------------------------------------------------
class _Asker:
    """The session's trust decider: hands each question to the main thread, waits for y/N.

    Prompting from the main thread keeps Ctrl-C and the terminal where the user expects.
    """

    def __init__(self) -> None:
        self.questions: queue.Queue[HostKeyQuestion] = queue.Queue()
        self._answers: queue.Queue[bool] = queue.Queue()
        self.asked = 0
        self.accepted: list[HostKeyQuestion] = []
        self._closed = threading.Event()

    def __call__(self, question: HostKeyQuestion) -> bool:
        if self._closed.is_set():
            return False
        self.questions.put(question)
        try:
            return self._answers.get(timeout=ANSWER_TIMEOUT_S)
        except queue.Empty:
            return False

    def answer(self, question: HostKeyQuestion, accepted: bool) -> None:
        self.asked += 1
        if accepted:
            self.accepted.append(question)
        self._answers.put(accepted)

    def close(self) -> None:
        """Refuse whatever is still asked or waiting (the command is ending)."""
        self._closed.set()
        self._answers.put(False)


def _trust(args: argparse.Namespace) -> int:
    from app.core.lab import Lab  # the SSH stack, only when connecting
    from app.core.store import HostNotFoundError, Store

    if not 0 < args.timeout <= 3600:
        raise UsageError("--timeout must be more than 0 and at most 3600 seconds")
    with Store.open() as store:
        spec = store.host(args.name)
        if spec is None:
            raise HostNotFoundError(f"no host named '{args.name}'; see: labdeck hosts ls")
        if spec.local:
            say(f"{spec.name} is this machine: there is no host key to trust")
            return 0
        interactive = sys.stdin.isatty()
        if not args.yes and not interactive:
            raise UsageError(
                "cannot ask for confirmation: stdin is not a terminal; "
                "rerun with --yes to accept the key it shows"
            )
        asker = _Asker()
        with Lab.open(store, trust=asker, hosts=[spec]) as lab:
            lab.start(dispatch=False, ingest=False)
            try:
                state, detail = _converse(lab.monitor, spec.name, asker, args)
            finally:
                # A session still waiting for an answer must not hold up the exit.
                asker.close()
    return _report(spec.name, state, detail, asker)


def _converse(
    monitor: ClusterMonitor, name: str, asker: _Asker, args: argparse.Namespace
) -> tuple[HostState, str]:
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            question = asker.questions.get(timeout=0.1)
        except queue.Empty:
            view = monitor.host(name)
            if view is None:
                return HostState.STOPPED, "the host was removed"
            if view.state != HostState.CONNECTING or view.sample is not None:
                return view.state, view.detail
            if time.monotonic() > deadline:
                return view.state, "no answer from the host before the timeout"
            continue
        asker.answer(question, _ask(question, args.yes))
        # The user's reading time does not count against the connection's time.
        deadline = time.monotonic() + args.timeout


def _ask(question: HostKeyQuestion, yes: bool) -> bool:
    say(f"host {question.host} port {question.port} offers a key seen for the first time:")
    say(f"  {question.key_type} {question.fingerprint}")
    if yes:
        say("accepted (--yes)")
        return True
    sys.stdout.write("Trust this key? Compare the fingerprint with the host's own. [y/N] ")
    sys.stdout.flush()
    reply = sys.stdin.readline()
    return reply.strip().lower() in ("y", "yes")


def _report(name: str, state: HostState, detail: str, asker: _Asker) -> int:
    for q in asker.accepted:
        say(f"trusted {q.key_type} {q.fingerprint} for {q.host} port {q.port}")
    if state == HostState.HOSTKEY_CHANGED:
        warn(f"{name}: {detail}")
        return 1
    if asker.asked and not asker.accepted:
        warn(f"{name}: key not trusted; nothing was saved")
        return 1
    if state in (HostState.ONLINE, HostState.STALE):
        if not asker.asked:
            say(f"the host key of {name} is already trusted")
        say(f"{name} is online")
        return 0
    if asker.accepted:
        say(f"{name} is not online yet: {state.label}{': ' + detail if detail else ''}")
        return 0
    warn(f"{name}: {state.label}{': ' + detail if detail else ''}")
    return 1
