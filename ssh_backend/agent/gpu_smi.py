"""The nvidia-smi GPU backend: a streaming ``--query-gpu … -lms N`` child plus a
``--query-compute-apps`` call kept off the sample path, and the parsers for their CSV output.

Who runs what comes from a background thread that re-queries the processes every
APPS_EVERY_S and, sooner, whenever a GPU's memory.used moves by more than APPS_MEM_STEP_MIB
since the last query (a process that starts must allocate a CUDA context, one that ends
frees its memory). A sample reads the latest answer and never waits for a query: a
per-sample ``nvidia-smi`` process cost more CPU and wall time than the whole stream.
A compute-apps ``-lms`` stream would be cheaper still, but its output has no end-of-list
marker, so an empty list (the last process ended) cannot be told from a late one.

Stdlib only, Python >= 3.8. ``[N/A]``, ``[Not Supported]``, ``N/A`` and empty cells are
missing values (None), never zeros. Lines that do not parse raise ValueError with a reason;
the backend skips them and reports them as errors without stopping.
"""

import os
import shutil
import subprocess
import threading
import time

import procinfo
import wire

GPU_FIELDS = (
    "index", "uuid", "name", "utilization.gpu", "memory.used", "memory.total",
    "temperature.gpu", "power.draw", "power.limit", "fan.speed",
)
APP_FIELDS = ("pid", "used_memory", "gpu_uuid")
MISMATCH_TEXT = "Driver/library version mismatch"
# Units nvidia-smi appends when "nounits" is not given.
_UNITS = (" %", " MiB", " W", " C", " MHz")
_MISSING = ("", "N/A", "[N/A]", "[Not Supported]", "Not Supported")
ONE_SHOT_TIMEOUT_S = 10.0
# Report unreadable output at most this often, so a broken nvidia-smi cannot flood the app.
ERROR_EVERY_S = 30.0
# The process list is at most this old, even when no GPU's memory changes.
APPS_EVERY_S = 5.0
# A memory.used move this large (MiB) since the last process query triggers the next one.
APPS_MEM_STEP_MIB = 32.0
# Triggered queries no closer together than this, so a job whose memory keeps growing
# cannot turn the refresher back into a per-sample nvidia-smi.
APPS_MIN_GAP_S = 1.0


def parse_value(text):
    """A number from one CSV cell, None when the cell says the value is missing."""
    cell = text.strip()
    if cell in _MISSING or (cell.startswith("[") and cell.endswith("]")):
        return None
    for unit in _UNITS:
        if cell.endswith(unit):
            cell = cell[: -len(unit)].strip()
            break
    try:
        value = float(cell)
    except ValueError:
        raise ValueError("not a number: %r" % text[:80]) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number: %r" % text[:80])
    return value


def is_mismatch(text):
    """The driver/library mismatch message if ``text`` contains it, else None."""
    if MISMATCH_TEXT not in text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:300]


def parse_gpu_line(line):
    """One line of ``--query-gpu=<GPU_FIELDS>`` as a dict; ValueError if it is not one."""
    cells = [cell.strip() for cell in line.strip().split(",")]
    if len(cells) != len(GPU_FIELDS):
        raise ValueError(
            "expected %d comma-separated fields, got %d: %r"
            % (len(GPU_FIELDS), len(cells), line.strip()[:120])
        )
    try:
        index = int(cells[0])
    except ValueError:
        raise ValueError("GPU index is not an integer: %r" % cells[0][:40]) from None
    if index < 0:
        raise ValueError("GPU index is negative: %d" % index)
    uuid = cells[1]
    if not (uuid.startswith("GPU-") or uuid.startswith("MIG-")) or len(uuid) > 100:
        raise ValueError("not a GPU uuid: %r" % uuid[:60])
    if not cells[2]:
        raise ValueError("GPU name is empty")
    values = [parse_value(cell) for cell in cells[3:]]
    return {
        "index": index, "uuid": uuid, "name": cells[2],
        "util_pct": values[0], "mem_used_mib": values[1], "mem_total_mib": values[2],
        "temp_c": values[3], "power_w": values[4], "power_limit_w": values[5],
        "fan_pct": values[6],
    }


def is_header(line):
    return line.strip().lower().startswith("index,")


def parse_apps(text):
    """``--query-compute-apps=pid,used_memory,gpu_uuid`` output as (pid, mem_mib, uuid)."""
    apps = []
    for line in text.splitlines():
        if not line.strip() or line.strip().lower().startswith("pid,"):
            continue
        if "No running" in line:
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(APP_FIELDS):
            raise ValueError("expected pid, memory, uuid: %r" % line.strip()[:120])
        try:
            pid = int(cells[0])
        except ValueError:
            raise ValueError("process id is not an integer: %r" % cells[0][:40]) from None
        apps.append((pid, parse_value(cells[1]), cells[2]))
    return apps


class Unavailable(Exception):
    """nvidia-smi cannot be used on this host (not installed, no driver)."""


def _run(argv, timeout=ONE_SHOT_TIMEOUT_S):
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable("%s failed: %s" % (argv[0], exc)) from None
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


class SmiBackend:
    name = "smi"
    simulated = False

    def __init__(self, interval_s, smi=None):
        path = smi or "nvidia-smi"
        resolved = shutil.which(path) if os.sep not in path else path
        if not resolved or not os.access(resolved, os.X_OK):
            raise Unavailable("nvidia-smi not found (%s)" % path)
        self._smi = resolved
        self._interval = interval_s
        self._lock = threading.Lock()
        self._latest = {}
        self._errors = []
        self._last_error_at = None
        self._skipped = 0
        self._child = None
        self._restarted_at = 0.0
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._procs = {}
        self._apps_mem = {}
        self._apps_at = 0.0
        self.needs_reboot = False
        self.statics = []
        query = "--query-gpu=" + ",".join(GPU_FIELDS)
        code, out = _run([self._smi, query, "--format=csv,noheader,nounits"])
        mismatch = is_mismatch(out)
        if mismatch:
            self.needs_reboot = True
            self.detail = "nvidia-smi: " + mismatch
            return
        if code != 0:
            raise Unavailable("nvidia-smi exited %d: %s" % (code, out.strip()[:200]))
        for line in out.splitlines():
            if not line.strip():
                continue
            try:
                gpu = parse_gpu_line(line)
            except ValueError as exc:
                self._note_error("unreadable nvidia-smi line skipped: %s" % exc)
                continue
            self._latest[gpu["index"]] = gpu
            self.statics.append(wire.gpu_static(
                gpu["index"], gpu["uuid"], gpu["name"], gpu["mem_total_mib"],
                gpu["power_limit_w"]))
        code, out = _run([self._smi, "--query-gpu=driver_version", "--format=csv,noheader"])
        driver = out.splitlines()[0].strip() if code == 0 and out.strip() else "unknown"
        self.detail = "nvidia-smi %s, driver %s" % (self._smi, driver)
        # The first list is fetched here so that the first sample already says who runs
        # what; later ones come from the refresher thread.
        self._refresh_processes()
        self._start_stream()
        refresher = threading.Thread(target=self._apps_loop, daemon=True)
        refresher.start()

    # -- the streaming child ----------------------------------------------------------
    def _start_stream(self):
        ms = max(100, round(self._interval * 1000))
        argv = [self._smi, "--query-gpu=" + ",".join(GPU_FIELDS),
                "--format=csv,noheader,nounits", "-lms", str(ms)]
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        except OSError as exc:
            self._note_error("cannot start nvidia-smi: %s" % exc)
            return
        self._child = child
        self._restarted_at = time.monotonic()
        reader = threading.Thread(target=self._read_stream, args=(child,), daemon=True)
        reader.start()

    def _read_stream(self, child):
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace")
            if not line.strip() or is_header(line):
                continue
            try:
                gpu = parse_gpu_line(line)
            except ValueError as exc:
                if is_mismatch(line):
                    self._note_error("nvidia-smi: " + line.strip()[:200])
                else:
                    self._note_error("unreadable nvidia-smi line skipped: %s" % exc)
                continue
            with self._lock:
                self._latest[gpu["index"]] = gpu
                before = self._apps_mem.get(gpu["uuid"])
            used = gpu["mem_used_mib"]
            if used is not None and (before is None or abs(used - before) > APPS_MEM_STEP_MIB):
                self._wake.set()
        child.stdout.close()

    def _stop_stream(self):
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _note_error(self, message):
        now = time.monotonic()
        with self._lock:
            if self._last_error_at is not None and now - self._last_error_at < ERROR_EVERY_S:
                self._skipped += 1
                return
            if self._skipped:
                message += " (%d similar messages suppressed)" % self._skipped
                self._skipped = 0
            self._last_error_at = now
            self._errors.append(message)

    # -- backend interface ------------------------------------------------------------
    def set_interval(self, interval_s):
        if self.needs_reboot or interval_s == self._interval:
            return
        self._interval = interval_s
        self._stop_stream()
        self._start_stream()

    def drain_errors(self):
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def read(self):
        if self.needs_reboot:
            return []
        child = self._child
        if (child is None or child.poll() is not None) and not self._closed:
            if time.monotonic() - self._restarted_at > 5.0:
                self._note_error("nvidia-smi stream stopped; restarting it")
                self._stop_stream()
                self._start_stream()
        with self._lock:
            latest = dict(self._latest)
            processes = self._procs
        readings = []
        for static in self.statics:
            gpu = latest.get(static["index"])
            if gpu is None or gpu["uuid"] != static["uuid"]:
                readings.append(wire.empty_reading(static))
                continue
            readings.append(wire.gpu_reading(
                static["index"], static["uuid"], gpu["util_pct"], gpu["mem_used_mib"],
                gpu["mem_total_mib"], gpu["temp_c"], gpu["power_w"], gpu["power_limit_w"],
                gpu["fan_pct"], processes.get(static["uuid"], ())))
        return readings

    # -- who runs what, off the sample path ------------------------------------------
    def request_process_refresh(self):
        """Ask the refresher for a new process list soon (it never blocks the caller)."""
        self._wake.set()

    def _apps_loop(self):
        while not self._stop.is_set():
            self._wake.wait(APPS_EVERY_S)
            if self._stop.is_set():
                return
            gap = APPS_MIN_GAP_S - (time.monotonic() - self._apps_at)
            if gap > 0 and self._stop.wait(gap):
                return
            self._wake.clear()
            self._refresh_processes()

    def _refresh_processes(self):
        # The memory seen before the query is the baseline: a change during the query
        # then triggers another one instead of going unnoticed.
        with self._lock:
            self._apps_mem = {
                gpu["uuid"]: gpu["mem_used_mib"] for gpu in self._latest.values()
                if gpu["mem_used_mib"] is not None
            }
        self._apps_at = time.monotonic()
        procs = self._processes()
        if procs is not None:
            with self._lock:
                self._procs = procs

    def _processes(self):
        """The processes by GPU uuid, or None when nvidia-smi could not say (the previous
        list then stands rather than every process seeming to vanish)."""
        try:
            code, out = _run([self._smi, "--query-compute-apps=" + ",".join(APP_FIELDS),
                              "--format=csv,noheader,nounits"], timeout=5.0)
        except Unavailable as exc:
            self._note_error(str(exc))
            return None
        if code != 0:
            self._note_error("nvidia-smi --query-compute-apps exited %d" % code)
            return None
        by_uuid = {}
        for line in out.splitlines():
            try:
                apps = parse_apps(line)
            except ValueError as exc:
                self._note_error("unreadable nvidia-smi line skipped: %s" % exc)
                continue
            for pid, mem_mib, uuid in apps:
                user, command = procinfo.describe(pid)
                by_uuid.setdefault(uuid, []).append(wire.gpu_process(pid, user, command, mem_mib))
        return by_uuid

    def close(self):
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._stop_stream()
