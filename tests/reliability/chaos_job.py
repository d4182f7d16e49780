"""The job every chaos run executes: what it prints, logs and exits with follows from its
``--seed`` alone, so the checker knows each run's truth without asking the run.

    python3 chaos_job.py --seed N

On the host (stdlib plus the ``labdeck`` client the wrapper puts on PYTHONPATH) it
appends its attempt id to ``~/chaos-ran.log`` (O_APPEND: one line per start, whoever
counts), then per step prints a console line the built-in parser reads
(``step i | chaos_loss: v``) among non-UTF-8 junk and a progress-bar redraw, logs two
series through ``labdeck``, sleeps, and exits with its planned code after a last,
unfinished console line. ``plan(seed)`` is the same truth, imported by the checker.
"""

import os
import random
import sys
import time

JUNK = b"\xff\xfe\xfa binary junk \x00\x01 ::: ==\n"
RAN_LOG = "chaos-ran.log"
# One run in three fails, with one of these codes.
FAILING = {1: 3, 4: 1}


def exit_code(seed):
    return FAILING.get(seed % 6, 0)


def plan(seed):
    """(exit code, console bytes, {series: [(step, value)]}, step sleep s) of ``seed``."""
    rng = random.Random(seed)
    steps = rng.randint(4, 12)
    pause = rng.uniform(0.5, 3.0) / steps
    console = [b"chaos job seed %d: %d steps\n" % (seed, steps)]
    series = {"chaos_loss": [], "chaos_acc": [], "chaos/lr": []}
    for step in range(steps):
        loss = round(rng.uniform(0.0, 5.0), 6)
        acc = round(rng.random(), 6)
        lr = 0.01 * 0.5 ** step
        console.append(JUNK)
        console.append(("".join(f"\rprogress {i}/4" for i in range(4)) + "\r").encode())
        console.append(f"step {step} | chaos_loss: {loss!r}\n".encode())
        series["chaos_loss"].append((step, loss))
        series["chaos_acc"].append((step, acc))
        series["chaos/lr"].append((step, lr))
    console.append(b"bye, exit code %d" % exit_code(seed))  # no newline: never a point
    return exit_code(seed), b"".join(console), series, pause


def main(argv):
    import labdeck

    seed = int(argv[argv.index("--seed") + 1])
    code, console, series, pause = plan(seed)
    fd = os.open(os.path.expanduser("~/" + RAN_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o600)
    os.write(fd, (os.environ.get("LABDECK_RUN_ID", "?") + "\n").encode())
    os.close(fd)
    run = labdeck.init(config={"seed": seed})
    out = sys.stdout.buffer
    lines = console.split(b"\n")
    out.write(lines[0] + b"\n")
    out.flush()
    for step in range(len(series["chaos_loss"])):
        # Three console pieces a step (junk, redraw + metric line) as planned above.
        out.write(lines[1 + 2 * step] + b"\n" + lines[2 + 2 * step] + b"\n")
        out.flush()
        run.log({"chaos_acc": series["chaos_acc"][step][1],
                 "chaos": {"lr": series["chaos/lr"][step][1]}}, step=step)
        time.sleep(pause)
    out.write(lines[-1])
    out.flush()
    run.finish()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
