"""Labdeck's host agent: samples the GPUs and speaks JSON lines on stdin/stdout.

    python3 agent.py --interval 1 --backend auto|nvml|smi|sim|none
                     [--sim-gpus N] [--sim-host-id ID] [--nvidia-smi PATH] [--version V]

Stdlib only (plus an optional pynvml beside it), Python >= 3.8. It writes ``hello`` and
then a ``sample`` every interval; it reads ``configure``, ``ping`` and ``shutdown``. End of
stdin means the SSH channel closed: the agent exits at once. ``watch`` / ``unwatch`` start
and stop tailing a run's files (tails.py); a thread of its own sends the ``tail`` chunks,
at most TAIL_BUDGET bytes per tick and never more than half of the time, so samples
keep flowing however much a job writes.
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import gpu_nvml  # noqa: E402
import gpu_sim  # noqa: E402
import gpu_smi  # noqa: E402
import hostinfo  # noqa: E402
import leases  # noqa: E402
import tails  # noqa: E402
import wire  # noqa: E402

MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 60.0
DEFAULT_SIM_GPUS = 4
MAX_COMMAND_BYTES = 1024 * 1024  # a watch lists an offset per event file
TAIL_TICK_S = 0.2
TAIL_BUDGET = 2 * 1024 * 1024  # bytes of files read per tick, over all watched runs


def shipped(name):
    """Whether a file of this folder belongs to the agent bundle (same rule as the app)."""
    if name == "sim_trace.json":
        return True
    return (
        name.endswith(".py")
        and not name.startswith("test_")
        and name not in ("conftest.py", "__init__.py")
    )


def bundle_version(files):
    """First 16 hex digits of sha256 over (name, content) pairs sorted by name."""
    digest = hashlib.sha256()
    for name in sorted(files):
        encoded = name.encode("utf-8")
        digest.update(struct.pack(">I", len(encoded)) + encoded)
        digest.update(struct.pack(">Q", len(files[name])) + files[name])
    return digest.hexdigest()[:16]


def own_version():
    files = {}
    for name in os.listdir(HERE):
        path = os.path.join(HERE, name)
        if shipped(name) and os.path.isfile(path):
            with open(path, "rb") as fh:
                files[name] = fh.read()
    return bundle_version(files)


def clamp_interval(value):
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(value)))


def mark_leases(readings):
    """Name the run holding each GPU's lease, whatever backend read the GPU."""
    for reading in readings:
        reading["leased_by"] = leases.holder(reading["uuid"],
                                             timeout=leases.SAMPLE_PROBE_TIMEOUT_S)
    return readings


class NoBackend:
    name = "none"
    simulated = False
    needs_reboot = False

    def __init__(self, detail):
        self.detail = detail
        self.statics = []

    def read(self):
        return []

    def set_interval(self, interval_s):
        pass

    def drain_errors(self):
        return []

    def close(self):
        pass


def open_backend(options, hostname):
    """The first backend that works, as (backend, [reasons the others did not])."""
    notes = []
    if options.backend == "sim":
        count = options.sim_gpus if options.sim_gpus > 0 else DEFAULT_SIM_GPUS
        return gpu_sim.SimBackend(count, options.sim_host_id or hostname), notes
    if options.backend == "none":
        return NoBackend("GPU sampling turned off"), notes
    if options.backend in ("auto", "nvml"):
        try:
            return gpu_nvml.NvmlBackend(), notes
        except gpu_nvml.Unavailable as exc:
            notes.append(str(exc))
    if options.backend in ("auto", "smi"):
        try:
            return gpu_smi.SmiBackend(options.interval, options.nvidia_smi), notes
        except gpu_smi.Unavailable as exc:
            notes.append(str(exc))
    return NoBackend("no GPU: " + "; ".join(notes) if notes else "no GPU"), notes


class Writer:
    """Serialises whole lines to stdout; a closed stdout ends the agent."""

    def __init__(self, stream, on_closed):
        self._stream = stream
        self._lock = threading.Lock()
        self._on_closed = on_closed

    def send(self, message):
        line = wire.encode(message)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                self._on_closed()


class Agent:
    def __init__(self, options, stdin, stdout):
        self.options = options
        self.interval = clamp_interval(options.interval)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.tails_wake = threading.Event()
        self.stdin = stdin
        self.writer = Writer(stdout, self.stop_now)
        self.tails = tails.Tails(self.send_tail)
        self.tails_lock = threading.Lock()

    def send_tail(self, run_id, source, inode, start, end, **fields):
        self.writer.send(wire.tail(run_id, source, inode, start, end, **fields))

    def tail_loop(self):
        """Tail the watched runs until the agent stops. A tick that spent time sending
        (a slow link) is followed by a pause as long, so samples get their turn."""
        while not self.stop.is_set():
            started = time.monotonic()
            used = 0
            try:
                with self.tails_lock:
                    while used < TAIL_BUDGET and not self.stop.is_set():
                        got = self.tails.poll(TAIL_BUDGET - used)
                        if not got:
                            break
                        used += got
            except Exception as exc:  # a tailing bug must not end the sampling
                self.writer.send(wire.error("tailing failed: %r" % (exc,)))
            spent = time.monotonic() - started
            self.tails_wake.wait(max(TAIL_TICK_S, spent))
            self.tails_wake.clear()

    def stop_now(self):
        self.stop.set()
        self.wake.set()
        self.tails_wake.set()

    def handle(self, raw, backend):
        """One command line from the app."""
        try:
            if len(raw) > MAX_COMMAND_BYTES:
                raise ValueError("command of %d bytes is too long" % len(raw))
            command = json.loads(raw.decode("utf-8"))
            if not isinstance(command, dict):
                raise ValueError("a command must be a JSON object")
            kind = command.get("type")
            if kind == "ping":
                ping_id = command.get("id")
                if isinstance(ping_id, bool) or not isinstance(ping_id, int):
                    raise ValueError("ping needs an integer id")
                self.writer.send(wire.pong(ping_id))
            elif kind == "configure":
                interval = command.get("interval")
                if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                        or interval != interval:
                    raise ValueError("configure needs a numeric interval")
                self.interval = clamp_interval(interval)
                backend.set_interval(self.interval)
                self.wake.set()
            elif kind == "shutdown":
                self.stop_now()
            elif kind == "watch":
                with self.tails_lock:
                    self.tails.watch(command.get("run_id"), command.get("offsets") or {})
                self.tails_wake.set()
            elif kind == "unwatch":
                with self.tails_lock:
                    self.tails.unwatch(command.get("run_id"))
            else:
                raise ValueError("unknown command type %r" % (kind,))
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # Deep nesting (RecursionError), an unhashable run id (TypeError) or a huge
            # interval (OverflowError) must not end the command reader with the agent alive.
            self.writer.send(wire.error("bad command ignored: %s" % str(exc)[:300]))

    def read_commands(self, backend):
        # readline is bounded so a line without end cannot grow memory; the rest of an
        # overlong line is read and dropped, and the next line is a command again.
        skipping = False
        try:
            for raw in iter(lambda: self.stdin.readline(MAX_COMMAND_BYTES + 1), b""):
                complete = raw.endswith(b"\n")
                if skipping:
                    skipping = not complete
                elif not complete and len(raw) > MAX_COMMAND_BYTES:
                    skipping = True
                    self.writer.send(wire.error(
                        "bad command ignored: a line over %d bytes" % MAX_COMMAND_BYTES))
                elif raw.strip():
                    self.handle(raw.strip(), backend)
                if self.stop.is_set():
                    return
        except (OSError, ValueError):
            pass
        self.stop_now()  # end of stdin: the channel is gone

    def run(self):
        hostname = socket.gethostname()
        backend, notes = open_backend(self.options, hostname)
        version = self.options.version or own_version()
        self.writer.send(wire.hello(
            version, hostname, hostinfo.boot_id(), backend.name, backend.detail,
            backend.simulated, backend.statics, backend.needs_reboot))
        if self.options.backend not in ("auto", "none") and backend.name == "none":
            self.writer.send(wire.error("%s backend unavailable: %s"
                                        % (self.options.backend, "; ".join(notes))))
        reader = threading.Thread(target=self.read_commands, args=(backend,), daemon=True)
        reader.start()
        threading.Thread(target=self.tail_loop, daemon=True).start()
        seq = 0
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    readings = backend.read()
                except Exception as exc:  # a backend bug must not kill the stream
                    readings = [wire.empty_reading(s) for s in backend.statics]
                    self.writer.send(wire.error("GPU reading failed: %r" % (exc,)))
                mark_leases(readings)
                for message in backend.drain_errors():
                    self.writer.send(wire.error(message))
                self.writer.send(wire.sample(seq, time.time(), readings))
                seq += 1
                # Sleep until the next tick; a configure wakes us to apply the new rate.
                while not self.stop.is_set():
                    remaining = started + self.interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self.wake.wait(remaining)
                    self.wake.clear()
        finally:
            backend.close()
        return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Labdeck host agent")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--backend", default="auto",
                        choices=("auto", "nvml", "smi", "sim", "none"))
    parser.add_argument("--sim-gpus", type=int, default=DEFAULT_SIM_GPUS)
    parser.add_argument("--sim-host-id", default=None)
    parser.add_argument("--nvidia-smi", default=None)
    parser.add_argument("--version", default=None)
    return parser.parse_args(argv)


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    agent = Agent(options, sys.stdin.buffer, sys.stdout.buffer)
    # TERM/HUP end the agent the same orderly way as EOF, so the nvidia-smi child goes too.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda _signum, _frame: agent.stop_now())
    return agent.run()


if __name__ == "__main__":
    code = main()
    # The stdin thread may still sit in readline(); a normal interpreter exit would then
    # abort on the buffered reader's lock (python/cpython#86883, "_enter_buffered_busy"),
    # so leave without finalising the interpreter.
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
