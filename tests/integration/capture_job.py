"""A training job for the capture tests: writes metrics through all three sources and
records what it wrote in ``truth.json`` in its run folder.

Sources: the ``labdeck`` client (``run.log``), a TensorBoard event file (``simple_value``
summaries, written with the stdlib by tfrecord.py, copied from tests/harness beside it) and
console lines, among garbage, progress-bar redraws and non-UTF-8 bytes. Halfway it leaves
a line unfinished and waits for ``~/go-<tag>`` so a test can cut the network or restart
the app at that point. ``--big MB`` instead writes that many MB of console, fast.

Run on the test host with the plain ``python3`` (stdlib only, plus the labdeck client the
wrapper puts on PYTHONPATH and tfrecord.py).
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
    tag = sys.argv[1]
    steps = int(sys.argv[2])
    big_mb = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    out = sys.stdout.buffer
    truth = {"client": [], "tb": [], "console": []}
    run = labdeck.init(config={"lr": 0.001, "depth": 3})
    tb_dir = os.path.join(os.environ["LABDECK_TB_DIR"], "train")
    os.makedirs(tb_dir, exist_ok=True)
    tb = open(os.path.join(tb_dir, "events.out.tfevents.1700000000.host.1.0"), "ab")
    gate = os.path.expanduser("~/go-" + tag)
    for step in range(steps):
        loss = 1.0 / (step + 1)
        if step == 3:
            loss = float("nan")
        elif step == 4:
            loss = float("inf")
        elif step == 5:
            loss = 1e300
        run.log({"loss": loss, "opt": {"lr": 0.001 * 0.9 ** step}}, step=step)
        truth["client"] += [["loss", step, enc(loss)], ["opt/lr", step, 0.001 * 0.9 ** step]]

        acc = f32(step / (steps + 1.0)) if step != 6 else float("nan")
        wall = 1700000000.0 + step * 0.25
        tb.write(record(scalar_event("tb_acc", step, wall, acc)))
        tb.flush()
        truth["tb"].append(["tb_acc", step, enc(acc), wall])

        value = -(step ** 3) * 1.25e-7 if step != 7 else float("-inf")
        line = f"step {step} | train_loss: {value!r}"
        truth["console"].append(["train_loss", step, enc(value)])
        out.write(b"Downloading shard 3 of 12 at 12:30:01 (45%), eta 3.2s\n")
        out.write(b"\xff\xfe\xfa binary junk \x00\x01 ::: ==\n")
        out.write("".join(f"\rprogress {i}/10 loss=99" for i in range(10)).encode())
        out.write(f"\rprogress done eval_loss={value * 2!r}\n".encode())
        truth["console"].append(["eval_loss", None, enc(value * 2)])
        if step % 5 == 0:
            out.write(f"validation score={step * 0.5!r} (best so far)\n".encode())
            truth["console"].append(["val_score", None, step * 0.5])
        if step == steps // 2:
            out.write(line[:9].encode())  # an unfinished line while the app is away
            out.flush()
            while not os.path.exists(gate):
                time.sleep(0.05)
            out.write(line[9:].encode() + b"\n")
        else:
            out.write(line.encode() + b"\n")
        out.flush()
        time.sleep(0.02)
    if big_mb:
        filler = b"x" * 120 + b" the quick brown fox, 12:00:01, 50%\n"
        block = filler * (1024 * 1024 // len(filler))
        for i in range(big_mb):
            out.write(block)
            out.write(b"chunk %d big_metric=%d\n" % (i, i))
            truth["console"].append(["big_metric", None, float(i)])
        out.flush()
    run.finish()
    tb.close()
    with open(os.path.join(os.environ["LABDECK_RUN_DIR"], "truth.json"), "w") as fh:
        json.dump(truth, fh)


main()
