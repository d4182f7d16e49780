"""A slow training job for the live run window test: every step writes one point to each
source — the ``labdeck`` client (``loss``, ``opt/lr``), a TensorBoard event file
(``train/tb_acc``) and a console line (``train_loss``) — then sleeps, so a window that is
open meanwhile sees its curves grow. What it wrote goes to ``truth.json`` in its run
folder at the end.

``live_capture_job.py TAG STEPS DELAY GATE...``: before each GATE step it waits for
``~/go-TAG-GATE``, so the test decides when the job may go on (and a gate's console line is
left unfinished while it waits). Runs on the test host with plain ``python3``: stdlib only,
plus the labdeck client the wrapper puts on PYTHONPATH and tfrecord.py (copied from
tests/harness beside it: TFRecord framing, ``simple_value`` summaries).
"""

import json
import math
import os
import sys
import time

import labdeck
from tfrecord import f32, record, scalar_event


def enc(value):
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def main():
    tag, steps, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    gates = {int(g) for g in sys.argv[4:]}
    out = sys.stdout.buffer
    truth = {"client": [], "tb": [], "console": []}
    # Flushed often, so the client's points arrive step by step rather than in bursts.
    run = labdeck.init(config={"lr": 0.001, "depth": 3}, flush_interval=0.1)
    tb_dir = os.path.join(os.environ["LABDECK_TB_DIR"], "train")
    os.makedirs(tb_dir, exist_ok=True)
    tb = open(os.path.join(tb_dir, "events.out.tfevents.1700000000.host.1.0"), "ab")
    for step in range(steps):
        loss = 1.0 / (step + 1) if step not in (3, 4) else float("nan" if step == 3 else "inf")
        lr = 0.001 * 0.9 ** step
        run.log({"loss": loss, "opt": {"lr": lr}}, step=step)
        truth["client"] += [["loss", step, enc(loss)], ["opt/lr", step, lr]]

        acc = f32(step / (steps + 1.0)) if step != 6 else float("nan")
        wall = 1700000000.0 + step * 0.25
        tb.write(record(scalar_event("tb_acc", step, wall, acc)))
        tb.flush()
        truth["tb"].append(["tb_acc", step, enc(acc), wall])

        value = -(step ** 3) * 1.25e-7 if step != 7 else float("-inf")
        line = f"step {step} | train_loss: {value!r}"
        truth["console"].append(["train_loss", step, enc(value)])
        out.write(b"Downloading shard 3 of 12 at 12:30:01 (45%), eta 3.2s\n")
        if step in gates:
            out.write(line[:9].encode())  # unfinished while the test cuts or restarts
            out.flush()
            gate = os.path.expanduser(f"~/go-{tag}-{step}")
            while not os.path.exists(gate):
                time.sleep(0.05)
            out.write(line[9:].encode() + b"\n")
        else:
            out.write(line.encode() + b"\n")
        out.flush()
        time.sleep(delay)
    run.finish()
    tb.close()
    with open(os.path.join(os.environ["LABDECK_RUN_DIR"], "truth.json"), "w") as fh:
        json.dump(truth, fh)


main()
