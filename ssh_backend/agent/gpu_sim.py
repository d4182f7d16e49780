"""The simulated GPU backend: replays the real H100 recording in sim_trace.json.

Stdlib only, Python >= 3.8. Idle GPUs replay the idle reading with small noise. A GPU is
busy while a live process of ours has ``LABDECK_SIM_GPUS=<indices>`` and
``LABDECK_SIM_HOST=<this agent's --sim-host-id>`` in its environment: that process is
listed on those GPUs with its real pid, user and command, and the GPU replays the recorded
training run (memory, power and temperature climbing, then the steady phase back and
forth for as long as the process lives). Afterwards it cools down from the recorded "after" reading.
Each GPU gets its own offsets and lag so tiles do not look identical.
"""

import bisect
import hashlib
import json
import math
import os
import random
import time

import procinfo
import wire

TRACE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sim_trace.json")
ENV_GPUS = "LABDECK_SIM_GPUS"
ENV_HOST = "LABDECK_SIM_HOST"
ENV_USER = "LABDECK_SIM_USER"
SCAN_EVERY_S = 1.0
COOL_TAU_S = 15.0


def sim_uuid(host_id, index):
    """A stable uuid in NVIDIA's format, distinct per simulated host and GPU."""
    digest = hashlib.sha256(("%s:%d" % (host_id, index)).encode("utf-8")).hexdigest()
    return "GPU-%s-%s-%s-%s-%s" % (
        digest[0:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32])


def parse_gpu_list(text, count):
    """Indices from ``"0,2"``; anything unreadable or out of range is ignored."""
    indices = set()
    for part in text.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < count:
            indices.add(int(part))
    return indices


def _ppid(pid, proc):
    try:
        with open(os.path.join(proc, str(pid), "stat"), "rb") as fh:
            stat = fh.read()
        # The command name may contain spaces or parentheses: parse after the last ')'.
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _Gpu:
    def __init__(self, index, host_id):
        rng = random.Random("%s:%d" % (host_id, index))
        self.index = index
        self.rng = rng
        self.temp_offset = rng.choice((-1, 0, 0, 1, 2, 3))
        self.power_offset = rng.uniform(-3.0, 6.0)
        self.power_scale = rng.uniform(0.96, 1.03)
        # GPUs of one run start a little apart, so their replays are out of step.
        self.lag_s = rng.uniform(0.0, 1.5)
        self.busy_since = None
        self.idle_since = None
        self.first_seen = {}


class SimBackend:
    name = "sim"
    simulated = True
    needs_reboot = False

    def __init__(self, count, host_id, trace_path=TRACE_FILE, clock=time.monotonic,
                 proc=procinfo.PROC):
        with open(trace_path, "rb") as fh:
            self._trace = json.loads(fh.read().decode("utf-8"))
        self._host_id = host_id
        self._clock = clock
        self._proc = proc
        self._scanned_at = None
        self._by_gpu = {}
        self._sim_users = {}
        self._gpus = [_Gpu(i, host_id) for i in range(count)]
        trace = self._trace
        self.detail = "simulated from %s (driver %s)" % (trace["source"], trace["driver"])
        self.statics = [
            wire.gpu_static(i, sim_uuid(host_id, i), trace["name"] + " (simulated)",
                            trace["mem_total_mib"], trace["power_limit_w"])
            for i in range(count)
        ]

    # -- which of our processes claim simulated GPUs ---------------------------------
    def _scan(self):
        now = self._clock()
        if self._scanned_at is not None and now - self._scanned_at < SCAN_EVERY_S:
            return
        self._scanned_at = now
        me = os.getpid()
        claims = {}
        sim_users = {}
        for pid in procinfo.own_pids(self._proc):
            if pid == me:
                continue
            env = procinfo.environ_of(pid, (ENV_GPUS, ENV_HOST, ENV_USER), self._proc)
            if ENV_GPUS not in env or env.get(ENV_HOST) != self._host_id:
                continue
            indices = parse_gpu_list(env[ENV_GPUS], len(self._gpus))
            if indices:
                claims[pid] = indices
                if env.get(ENV_USER):
                    sim_users[pid] = env[ENV_USER]
        self._sim_users = sim_users
        # A launcher and the job it starts share the environment; like NVML, list only
        # the process that does the work (the one with no claiming child).
        parents = set()
        for pid in claims:
            parent = _ppid(pid, self._proc)
            if parent in claims and claims[parent] == claims[pid]:
                parents.add(parent)
        by_gpu = {}
        for pid, indices in claims.items():
            if pid in parents:
                continue
            for index in indices:
                by_gpu.setdefault(index, []).append(pid)
        self._by_gpu = by_gpu

    # -- values ------------------------------------------------------------------------
    def _train_index(self, elapsed, lag_s):
        train = self._trace["train"]
        times = train["t"]
        first = self._trace["steady_first"]
        last = self._trace["steady_last"]
        elapsed = max(0.0, elapsed - lag_s)
        if elapsed > times[last]:
            # Replay the steady phase forwards then backwards: no jump in temperature.
            span = times[last] - times[first]
            position = (elapsed - times[first]) % (2 * span)
            elapsed = times[first] + (position if position < span else 2 * span - position)
        return max(0, bisect.bisect_right(times, elapsed) - 1)

    def _idle(self, gpu, now):
        trace = self._trace
        idle = trace["idle"]
        base_temp = idle["temp_c"] + gpu.temp_offset
        base_power = idle["power_w"] + gpu.power_offset
        temp, power = base_temp, base_power
        if gpu.idle_since is not None:
            # Cooling down after a run, from the reading recorded after the real one.
            after = trace["after"]
            decay = math.exp(-(now - gpu.idle_since) / COOL_TAU_S)
            temp = base_temp + (after["temp_c"] + gpu.temp_offset - base_temp) * decay
            power = base_power + (after["power_w"] * gpu.power_scale - base_power) * decay
        if gpu.rng.random() < 0.05:
            temp += gpu.rng.choice((-1, 1))
        return {
            "util_pct": idle["util_pct"],
            "mem_used_mib": idle["mem_used_mib"],
            "temp_c": round(temp),
            "power_w": round(power + gpu.rng.gauss(0.0, 0.08), 3),
        }

    def _reading(self, gpu, now):
        static = self.statics[gpu.index]
        pids = self._by_gpu.get(gpu.index, [])
        for pid in list(gpu.first_seen):
            if pid not in pids:
                del gpu.first_seen[pid]
        if not pids:
            if gpu.busy_since is not None:
                gpu.busy_since = None
                gpu.idle_since = now
            values = self._idle(gpu, now)
            processes = []
        else:
            if gpu.busy_since is None:
                gpu.busy_since = now
            train = self._trace["train"]
            i = self._train_index(now - gpu.busy_since, gpu.lag_s)
            values = {
                "util_pct": train["util_pct"][i],
                "mem_used_mib": train["mem_used_mib"][i],
                "temp_c": train["temp_c"][i] + gpu.temp_offset,
                "power_w": round(train["power_w"][i] * gpu.power_scale, 3),
            }
            processes = []
            extra_mem = 0.0
            for n, pid in enumerate(sorted(pids)):
                seen = gpu.first_seen.setdefault(pid, now)
                mem = train["proc_mem_mib"][self._train_index(now - seen, gpu.lag_s)]
                if n:
                    extra_mem += mem or 0.0
                user, command = procinfo.describe(pid, self._proc)
                user = self._sim_users.get(pid, user)
                processes.append(wire.gpu_process(pid, user, command, mem))
            values["mem_used_mib"] += extra_mem
        return wire.gpu_reading(
            gpu.index, static["uuid"], values["util_pct"], values["mem_used_mib"],
            static["memory_total_mib"], values["temp_c"], values["power_w"],
            static["power_limit_w"], None, processes)

    # -- backend interface ------------------------------------------------------------
    def read(self):
        self._scan()
        now = self._clock()
        return [self._reading(gpu, now) for gpu in self._gpus]

    def set_interval(self, interval_s):
        pass  # replay follows the clock, not the sampling rate

    def drain_errors(self):
        return []

    def close(self):
        pass
