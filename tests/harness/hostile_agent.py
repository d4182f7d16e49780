"""A hostile agent: speaks the agent protocol, then floods the app with random and
adversarial messages of every type until a deadline, then only answers pings.

Run by a LocalSession in place of agent.py (stdlib only). Its orders come from
``$HOME/hostile.json``: ``round``, ``seed``, ``until`` (wall time) and ``lines`` (it
floods until both are reached, over all its starts, then writes
``$HOME/hostile.done.<round>``), ``victims`` (run ids of other hosts), ``own`` (run ids
placed on this host). Each start uses the next seed, so a reconnect (after a line it made
too long, or a fatal error) goes on with new messages; a new ``round`` floods again.
What it sends: hellos and samples with 1000s of GPUs and processes, renumbered GPUs,
HTML, control characters, lone surrogates and 100k-character names, huge numbers and NaN;
tail chunks for other hosts' runs, made-up runs and its own, with 1000s of series, long
series names, deeply nested parameters; pongs, errors, garbage, deep nesting, unknown types.
"""

import base64
import json
import os
import random
import sys
import threading
import time
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "ssh_backend", "agent"))
import wire

NASTY = ["<img src=/dev/zero>", "<b>bold</b>", "\x1b[2J\x1b]0;pwned\x07", "\u202eevil",
         "\x00", "\r\n", "\ud800", "\u2028", "", " ", "é€😀", "%s%n"]
HUGE = "a" * 100_000
NUMBERS = [0, -1, 1e308, -1e308, 5e-324, 2**63, 2**64 + 1, 10**30, 123.5]


class Flood:
    def __init__(self, orders, rng):
        self.rng = rng
        self.victims = list(orders.get("victims") or [])
        self.own = list(orders.get("own") or [])
        self.offsets = {}  # (own run, source) -> next offset
        self.seq = 0

    def text(self):
        r = self.rng
        if r.random() < 0.001:
            return HUGE
        return r.choice(NASTY) if r.random() < 0.5 else "".join(
            chr(r.randrange(0, 0x3000)) for _ in range(r.randrange(0, 40)))

    def number(self):
        return self.rng.choice(NUMBERS) if self.rng.random() < 0.3 else self.rng.random() * 100

    def gpu_count(self):
        return self.rng.choice([0, 1, 8, 63, 64, 65, 200, 1000, 3000])

    def hello(self):
        gpus = [wire.gpu_static(i, f"GPU-{i}", self.text(), self.number(), self.number())
                for i in range(self.gpu_count())]
        return wire.hello(self.text(), self.text(), self.text(), "nvml", self.text(), False,
                          gpus, needs_reboot=self.rng.random() < 0.05)

    def sample(self):
        r = self.rng
        count = self.gpu_count()
        first = r.choice([0, 0, 0, r.randrange(-10, 10**6)])
        crowded = r.random() < 0.2
        readings = []
        for i in range(count):
            procs = [wire.gpu_process(r.randrange(1, 2**22), self.text(), self.text(),
                                      self.number())
                     for _ in range(r.randrange(500, 2000) if crowded and i < 3
                                    else r.randrange(0, 3))]
            readings.append(wire.gpu_reading(
                first + i, self.text(), self.number(), self.number(), self.number(),
                self.number(), self.number(), self.number(), None, procs,
                r.choice([None, self.text(), *self.victims])))
        self.seq += 1
        message = wire.sample(self.seq, time.time(), readings)
        if r.random() < 0.05:
            message["time"] = "NaN"  # a string where a number belongs
        return message

    def run_id(self):
        r = self.rng
        pick = r.random()
        if pick < 0.4 and self.victims:
            return r.choice(self.victims)
        if pick < 0.6 and self.own:
            return r.choice(self.own)
        return r.choice([f"r{r.randrange(2**32):08x}", self.text(), "../../etc"])

    def tail(self):
        r = self.rng
        run_id = self.run_id()
        source = r.choice(["output.log", "metrics.jsonl", "tb/x/events.out.tfevents.1",
                           "tb/" + self.text()])
        data = b""
        points = ()
        params = None
        if source == "output.log" or r.random() < 0.2:
            unit = (self.text().encode("utf-8", "replace") + b"\nstep 1 loss=nan\n"
                    + bytes(r.randrange(256) for _ in range(64)))
            size = r.choice([10, 1000, 100_000, 1_000_000])
            data = (unit * (size // len(unit) + 1))[:size]
        if source != "output.log":
            series = r.choice([5, 50, 2000, 5000])
            long = r.random() < 0.2
            points = [(f"s{r.randrange(series)}" + ("x" * 300 if long else ""),
                       r.choice([None, r.randrange(-2**63, 2**63)]), time.time(),
                       r.choice([float("nan"), float("inf"), 1e308, r.random()]))
                      for _ in range(r.randrange(1, 8000))]
        if r.random() < 0.3:
            params = {self.text(): self.nested(r.randrange(1, 30)) for _ in range(r.randrange(50))}
        key = (run_id, source)
        start = self.offsets.get(key, 0) if run_id in self.own else r.choice([0, 16, 10**6])
        end = start + max(len(data), r.randrange(1, 5000))
        self.offsets[key] = end
        return wire.tail(run_id, source, r.randrange(1, 1000), start, end, data=data,
                         points=points, params=params, reset=r.random() < 0.05,
                         warning=self.text())

    def nested(self, depth):
        value = self.text()
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {"k": value}
        return value

    def garbage(self):
        r = self.rng
        return r.choice([
            b"[" * 100_000, b'{"type":"sample","seq":1,"time":' + b"9" * 5000 + b',"gpus":[]}',
            b'{"type":"hello"}', b'{"type":"' + b"x" * 10_000 + b'"}', b"null", b"[1,2]",
            bytes(r.randrange(256) for _ in range(r.randrange(1, 5000))),
            json.dumps({"type": "tail", "run_id": self.run_id(), "source": "output.log",
                        "inode": 1, "start": 0, "end": 3,
                        "data": base64.b64encode(b"abc").decode() + "!"}).encode(),
        ])

    def line(self):
        try:
            return self._line()
        except ValueError:  # a value JSON cannot spell: send something else
            return self.garbage() + b"\n"

    def _line(self):
        r = self.rng
        kind = r.random()
        if kind < 0.05:
            message = self.hello()
        elif kind < 0.35:
            message = self.sample()
        elif kind < 0.75:
            message = self.tail()
        elif kind < 0.8:
            message = wire.pong(r.choice([0, 1, 2**31, 2**64]))
        elif kind < 0.85:
            message = wire.error(self.text() * r.randrange(1, 5), fatal=r.random() < 0.02)
        elif kind < 0.999:
            return self.garbage() + b"\n"
        else:
            return b"x" * (5 * 1024 * 1024) + b"\n"  # over the line limit: ends the stream
        # ensure_ascii: lone surrogates go out as \ud800 escapes, as a hostile host would.
        return json.dumps(message, allow_nan=r.random() < 0.02).encode() + b"\n"


class Orders:
    """The test's orders in ``$HOME``: read again while idle, so that the test can start
    another round of flooding (``round`` goes up) on the same connection."""

    def __init__(self, home):
        self.home = home
        self.round = None
        self.orders = {}
        self.sent = 0

    def reload(self):
        """Whether a new round began."""
        with open(os.path.join(self.home, "hostile.json")) as f:
            orders = json.load(f)
        if orders["round"] == self.round:
            return False
        self.orders, self.round = orders, orders["round"]
        self.sent = int(self._read("sent") or 0)
        return True

    def flooding(self):
        return time.time() < self.orders["until"] or self.sent < self.orders["lines"]

    def count(self):
        self.sent += 1
        if self.sent % 20 == 0:  # what a restart goes on from
            self._write("sent", str(self.sent))

    def finish(self):
        if self._read("done") is None:
            self._write("done", "")

    def _path(self, what):
        return os.path.join(self.home, f"hostile.{what}.{self.round}")

    def _read(self, what):
        try:
            with open(self._path(what)) as f:
                return f.read()
        except OSError:
            return None

    def _write(self, what, text):
        with open(self._path(what), "w") as f:
            f.write(text)


def main():
    # A real hostile host floods from its own CPU; this one shares the test machine's, so
    # it lets the app whose stalls the test measures go first.
    os.nice(5)
    home = os.path.expanduser("~")
    counter = os.path.join(home, "hostile.starts")
    starts = int(open(counter).read()) if os.path.exists(counter) else 0
    with open(counter, "w") as f:
        f.write(str(starts + 1))
    orders = Orders(home)
    orders.reload()
    flood = Flood(orders.orders, random.Random(orders.orders["seed"] * 1000 + starts))
    out = sys.stdout.buffer
    pings = deque()

    def read_commands():
        for raw in sys.stdin.buffer:
            try:
                command = json.loads(raw)
            except ValueError:
                continue
            if command.get("type") == "ping":
                pings.append(command.get("id", 0))
        os._exit(0)  # the app closed our stdin: it is done with us

    threading.Thread(target=read_commands, daemon=True).start()
    out.write(wire.encode(flood.hello()) if starts else wire.encode(wire.hello(
        "hostile", "b", "b00t", "nvml", "NVML", False,
        [wire.gpu_static(i, f"GPU-{i}", "<img src=/dev/zero>", 1, 1) for i in range(1000)])))
    out.flush()
    while True:
        while pings:
            out.write(wire.encode(wire.pong(pings.popleft())))
        if orders.flooding():
            out.write(flood.line())
            orders.count()
        else:
            orders.finish()
            out.write(wire.encode(wire.sample(flood.seq, time.time(), [])))
            flood.seq += 1
            time.sleep(0.2)
            if orders.reload():
                flood = Flood(orders.orders, random.Random(orders.orders["seed"] * 1000 + starts))
        out.flush()


if __name__ == "__main__":
    main()
