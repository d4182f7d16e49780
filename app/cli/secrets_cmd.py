"""``labdeck secrets set / ls / rm``: the run secrets kept in the OS keyring.

A value is never an argument (it would show in the process list and the shell history):
``set`` asks for it without echo on a terminal, or reads it from stdin when piped
(``pass show wandb | labdeck secrets set WANDB_API_KEY``; one trailing newline is
dropped). ``ls`` prints names only. Job specs name secrets with ``secrets:`` or
``labdeck submit --secret NAME``; see ``app.core.jobs.secrets``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from app.cli.common import UsageError, say, warn

EXIT_NOT_FOUND = 1


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "secrets",
        help="keep run secrets (API keys, tokens) in the OS keyring",
        description="Secrets live in the OS keyring, never in job files, the queue, logs or "
        "on a command line; a run names them (secrets: in a job file, or submit --secret "
        "NAME) and gets them in its environment.",
    )
    actions = parser.add_subparsers(dest="secrets_command", metavar="ACTION", required=True,
                                     parser_class=type(parser))
    set_ = actions.add_parser(
        "set", help="store a secret (the value is typed without echo, or piped on stdin)"
    )
    set_.add_argument("name", metavar="NAME", help="the variable name the job sees")
    # Only to refuse a value given here without repeating it in the error.
    set_.add_argument("value", nargs="*", help=argparse.SUPPRESS)
    set_.set_defaults(run=_set)
    ls = actions.add_parser("ls", help="list the names of the stored secrets")
    ls.set_defaults(run=_ls)
    rm = actions.add_parser("rm", help="remove a secret")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=_rm)


def _set(args: argparse.Namespace) -> int:
    from app.core.jobs import secrets

    if args.value:
        raise UsageError("a secret's value is never given on the command line (it would "
                         "show in the process list and the shell history): run "
                         f"`labdeck secrets set {args.name}` and type it, or pipe it in")
    try:
        secrets.check_name(args.name)
        value = _read_value(args.name)
        secrets.set_secret(args.name, value)
    except secrets.SecretsError as exc:
        raise UsageError(str(exc)) from None
    say(f"secret {args.name} stored in the keyring")
    return 0


def _read_value(name: str) -> str:
    if sys.stdin is None:
        raise UsageError("no input to read the value from: pipe it in, or run this in a "
                         "terminal")
    if sys.stdin.isatty():
        return getpass.getpass(f"value of {name} (not shown): ")
    data = sys.stdin.buffer.read()
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"secret {name}: the value on stdin is not UTF-8 text; nothing was "
                         "stored") from None


def _ls(args: argparse.Namespace) -> int:
    from app.core.jobs import secrets

    try:
        names = secrets.list_names()
    except secrets.SecretsError as exc:
        raise UsageError(str(exc)) from None
    if not names:
        warn("no secrets yet; add one with: labdeck secrets set NAME")
    for name in names:
        say(name)
    return 0


def _rm(args: argparse.Namespace) -> int:
    from app.core.jobs import secrets

    try:
        found = secrets.delete_secret(args.name)
    except secrets.SecretsError as exc:
        raise UsageError(str(exc)) from None
    if not found:
        warn(f"no secret named {args.name}; see the list with: labdeck secrets ls")
        return EXIT_NOT_FOUND
    say(f"secret {args.name} removed")
    return 0
