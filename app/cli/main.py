"""``labdeck`` argument parsing, dispatch, logging and the one place errors become exits.

Exit codes: 0 success; 1 the command ran but something did not answer or was refused;
2 a user error (bad arguments, unknown host, unreadable key or config), printed as one
line on stderr; 70 an unexpected error, logged with its traceback; 130 interrupted;
141 the reader of stdout went away (``labdeck ls | head -1``), said nowhere.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import select
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import app
from app.cli import (
    desktop_cmd,
    gpus_cmd,
    hosts_cmd,
    lab_cmd,
    metrics_cmd,
    runs_cmd,
    secrets_cmd,
    serve_cmd,
    window,
)
from app.cli.common import UsageError, check_display, warn
from app.core import paths

log = logging.getLogger("labdeck.cli")

EXIT_USAGE = 2
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130
# What a shell reports for a writer killed by SIGPIPE: the output was not all read, which
# `set -o pipefail` scripts can tell from success.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE
LOG_FILE = "labdeck.log"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (plus where to get help)."""

    def error(self, message: str) -> NoReturn:
        warn(f"{message} (see: {self.prog} --help)")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="labdeck",
        description="Watch and use your lab's GPU workstations. "
        "Without a command, opens the Labdeck window.",
    )
    parser.add_argument("--version", action="version", version=f"labdeck {app.__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the window offscreen against a simulated lab, check it, and exit",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use the demo lab: simulated workstations and runs, in a Labdeck home of its "
        "own (never your real lab); with a command, the command acts on the demo lab",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PATH",
        help="with --self-test: save a PNG of the window to PATH",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    hosts_cmd.add_parser(commands)
    gpus_cmd.add_parser(commands)
    runs_cmd.add_parser(commands)
    lab_cmd.add_parser(commands)
    serve_cmd.add_parser(commands)
    metrics_cmd.add_parser(commands)
    secrets_cmd.add_parser(commands)
    desktop_cmd.add_parser(commands)
    window.add_parser(commands)
    return parser


class _LogFileHandler(logging.handlers.RotatingFileHandler):
    """The log file, which stays quiet when it cannot be written (a full disk): the
    command says what went wrong itself, never with a logging traceback on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def setup_logging() -> Path | None:
    """Log to a private rotating file; returns its path (None if it cannot be created)."""
    try:
        log_path = paths.log_dir() / LOG_FILE
        paths.touch_private(log_path)
        handler = _LogFileHandler(log_path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # paramiko logs every channel event at INFO; its warnings are enough here.
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    return log_path


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # ``submit train.py --gpus 2 -- --lr 3e-4``: what follows ``--`` belongs to the job.
    # argparse cannot put it after options into a positional, so it is split off here.
    passthrough: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, passthrough = words[:cut], words[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(words)
    if passthrough is not None:
        if not hasattr(args, "args"):
            parser.error("'--' only goes with: labdeck submit SCRIPT [options] -- ARGS")
        args.args = [*args.args, *passthrough]
    if args.demo:
        from app.core.demo import use_demo_home

        use_demo_home()  # before logging starts: the demo logs into its own home
    log_path = setup_logging()
    log.info("labdeck %s: %s", app.__version__, args.command or "window")
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # One Ctrl-C ends the command: another one while it winds down (threads
        # stopping, the interpreter exiting) must not turn the exit into a death by signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if not _stdout_reader_gone():
            return _failed(exc, log_path)  # some other pipe: a real error
        log.info("stdout was closed by its reader; stopping")
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    except Exception as exc:
        return _failed(exc, log_path)


def _failed(exc: Exception, log_path: Path | None) -> int:
    if _is_user_error(exc):
        warn(str(exc))
        return EXIT_USAGE
    log.exception("unexpected error")
    where = f"; details are in {log_path}" if log_path else ""
    warn(f"unexpected error: {type(exc).__name__}: {exc}{where}")
    return EXIT_SOFTWARE


def _stdout_reader_gone() -> bool:
    """Is stdout a pipe (or socket) whose reader has gone? The kernel flags its write end
    with POLLERR then; a broken pipe to anything else (a subprocess, a host) is not
    this and stays an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):  # no stdout, or not a file
        return False
    return any(flags & (select.POLLERR | select.POLLHUP) for _, flags in events)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's own flush at exit, of what
    is still buffered, finds no closed pipe: that would print "Exception ignored …
    BrokenPipeError" (the recipe of the Python docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _is_user_error(exc: Exception) -> bool:
    """A usage, store or config error. The store and config modules are looked up only if
    something imported them (an error of theirs means it did): importing them here would
    load sqlite_utils and paramiko into every start, ``--version`` included."""
    kinds: list[type[BaseException]] = [UsageError]
    for module, name in (("app.core.store", "StoreError"), ("ssh_backend.config", "ConfigError")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            kinds.append(getattr(loaded, name))
    return isinstance(exc, tuple(kinds))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command is None:
        if args.screenshot is not None and not args.self_test:
            raise UsageError("--screenshot only works with --self-test")
        if args.self_test:
            # Qt is imported here and only here: the subcommands stay headless.
            from app.ui.shell.selftest import run_self_test

            return run_self_test(args.screenshot, demo=args.demo)
        check_display()
        if args.demo:
            return _open_demo_window()
        from app.cli.window import open_window

        return open_window()
    if args.self_test or args.screenshot is not None:
        raise UsageError("--self-test and --screenshot do not combine with a command")
    result: int = args.run(args)
    return result


def _open_demo_window() -> int:
    """The window on the demo lab: hosts and first sweep prepared, the other user started
    (and stopped again when the window closes)."""
    from app.cli.window import open_window
    from app.core.demo import prepare_demo
    from app.core.store import Store

    with Store.open() as store:
        lab = prepare_demo(store)
    try:
        return open_window()
    finally:
        lab.stop()
