"""Demo training run: logistic regression on synthetic data, by SGD, in plain Python.

Reports its progress the three ways Labdeck reads:
- the ``labdeck`` client (``train/loss``, ``train/acc`` every step; ``val/loss``,
  ``val/acc`` every epoch; the arguments as parameters),
- TensorBoard event files in ``$LABDECK_TB_DIR`` (``lr``, ``grad_norm`` every step),
- the console, one line per epoch (``epoch 2/5 | step 40 | loss 0.41 | acc 0.83``).

``--sleep`` stands in for the GPU work of a step; ``LABDECK_DEMO_SPEED`` (a factor > 1)
shortens it, so tests can run the demo lab time-compressed. Standard library only,
Python >= 3.8: it runs with any ``python3``, like a job on a bare workstation.
"""

import argparse
import math
import os
import random
import socket
import struct
import sys
import time

try:
    import labdeck  # on PYTHONPATH under Labdeck; without it, nothing is recorded
except ImportError:
    labdeck = None

FEATURES = 16
VAL_SIZE = 256
TASK_SEED = 1234  # every run learns the same task; --seed changes data order and init
LABEL_NOISE = 0.08


# -- a minimal TensorBoard event writer (TFRecord framing, masked CRC-32C) -------------
def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def _masked_crc(data):
    c = 0xFFFFFFFF
    for byte in data:
        c = _CRC[(c ^ byte) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value):
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number, wire_type, payload):
    if wire_type == 2:
        payload = _varint(len(payload)) + payload
    return _varint(number << 3 | wire_type) + payload


class EventWriter:
    """Scalars in ``events.out.tfevents.*`` as PyTorch's SummaryWriter writes them:
    Event{wall_time=1, step=2, file_version=3, summary=5{value=1{tag=1, simple_value=2}}}."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self._file = open(os.path.join(folder, name), "ab")
        self._event(_field(3, 2, b"brain.Event:2"))

    def _event(self, body):
        data = _field(1, 1, struct.pack("<d", time.time())) + body
        head = struct.pack("<Q", len(data))
        self._file.write(head + struct.pack("<I", _masked_crc(head)) + data
                         + struct.pack("<I", _masked_crc(data)))

    def scalars(self, step, values):
        summary = b"".join(
            _field(1, 2, _field(1, 2, tag.encode("utf-8")) + _field(2, 5, struct.pack("<f", v)))
            for tag, v in values.items())
        self._event(_field(2, 0, _varint(step)) + _field(5, 2, summary))
        self._file.flush()

    def close(self):
        self._file.close()


# -- the model -------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _dot(a, b):
    return sum(a[i] * b[i] for i in range(FEATURES))


def make_task():
    rng = random.Random(TASK_SEED)
    weights = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]

    def sample(r):
        x = [r.gauss(0.0, 1.0) for _ in range(FEATURES)]
        label = 1 if _dot(weights, x) > 0 else 0
        return x, (1 - label) if r.random() < LABEL_NOISE else label

    return sample, [sample(rng) for _ in range(VAL_SIZE)]


def evaluate(w, b, batch):
    loss = correct = 0.0
    for x, y in batch:
        p = _sigmoid(_dot(w, x) + b)
        p = min(max(p, 1e-7), 1 - 1e-7)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += (p >= 0.5) == (y == 1)
    return loss / len(batch), correct / len(batch)


def sgd_step(w, b, batch, lr):
    grad_w = [0.0] * FEATURES
    grad_b = 0.0
    for x, y in batch:
        err = _sigmoid(_dot(w, x) + b) - y
        for i in range(FEATURES):
            grad_w[i] += err * x[i] / len(batch)
        grad_b += err / len(batch)
    for i in range(FEATURES):
        w[i] -= lr * grad_w[i]
    return b - lr * grad_b, math.sqrt(sum(g * g for g in grad_w) + grad_b * grad_b)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0, help="data order and initialisation")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sleep", type=float, default=0.1,
                        help="seconds of simulated GPU work per step")
    args = parser.parse_args(argv)
    if min(args.epochs, args.steps_per_epoch, args.batch_size) < 1 or args.sleep < 0:
        parser.error("epochs, steps per epoch and batch size must be >= 1, sleep >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    speed = max(float(os.environ.get("LABDECK_DEMO_SPEED") or 1.0), 1e-3)
    sample, val = make_task()
    rng = random.Random(args.seed)
    w = [rng.gauss(0.0, 0.5) for _ in range(FEATURES)]
    b = 0.0
    run = labdeck.init(config=vars(args)) if labdeck is not None else None
    tb_dir = os.environ.get("LABDECK_TB_DIR")
    writer = EventWriter(tb_dir) if tb_dir else None
    total = args.epochs * args.steps_per_epoch
    print(f"demo training: logistic regression on {FEATURES} synthetic features, "
          f"learning rate {args.lr:g}, seed {args.seed}, {total} steps", flush=True)
    step = 0
    for epoch in range(1, args.epochs + 1):
        losses, accs = [], []
        for _ in range(args.steps_per_epoch):
            lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))  # cosine
            batch = [sample(rng) for _ in range(args.batch_size)]
            loss, acc = evaluate(w, b, batch)
            b, grad_norm = sgd_step(w, b, batch, lr)
            losses.append(loss)
            accs.append(acc)
            if run is not None:
                run.log({"train": {"loss": loss, "acc": acc}}, step=step)
            if writer is not None:
                writer.scalars(step, {"lr": lr, "grad_norm": grad_norm})
            step += 1
            time.sleep(args.sleep / speed)
        val_loss, val_acc = evaluate(w, b, val)
        if run is not None:
            run.log({"val": {"loss": val_loss, "acc": val_acc}}, step=step - 1)
        print(f"epoch {epoch}/{args.epochs} | step {step - 1} | "
              f"loss {sum(losses) / len(losses):.4f} | acc {sum(accs) / len(accs):.4f}",
              flush=True)
    print(f"finished after {args.epochs} epochs; validation accuracy "
          f"{100 * val_acc:.1f} percent", flush=True)
    if writer is not None:
        writer.close()
    if run is not None:
        run.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
