"""The demo lab's "other user": a process that holds simulated GPUs and does nothing.

Started by the demo with ``LABDECK_SIM_GPUS``, ``LABDECK_SIM_HOST`` and ``LABDECK_SIM_USER``
in its environment, so the simulated host lists it on those GPUs as that user's job and
Labdeck's scheduler has to work around it. It sleeps until it is terminated, and ends by
itself when the process that started it is gone (a demo that crashed leaves nothing).
Standard library only.
"""

import argparse
import os
import signal
import sys
import time

POLL_S = 0.5


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owner", default="someone", help="whose job this pretends to be")
    parser.add_argument("--max-hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()
    deadline = time.monotonic() + args.max_hours * 3600.0
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
