"""``python -m app`` and the ``labdeck`` entry point."""

from __future__ import annotations

import sys

from app.cli.main import EXIT_INTERRUPTED, main


def run() -> None:
    """``main``, with a Ctrl-C that lands outside it (while the interpreter starts the
    command, or as it winds down) ending the same quiet way as one inside it."""
    try:
        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("labdeck: interrupted\n")
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    run()
