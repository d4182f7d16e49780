"""Tail the files of watched runs by byte offset and inode; turn new content into chunks.

Sources of a run (``~/.labdeck/runs/<id>/``): ``output.log`` (raw bytes, at most
LOG_CHUNK per message), ``metrics.jsonl`` (complete lines only, parsed into points and
params), every ``tb/**/events.out.tfevents.*`` (complete records only, see
tfevents.py), and as ``wd/<path>`` the event files the job writes in its working folder
where its library puts them (found as eventfiles.py says). A source that does not exist
yet is waited for. A new inode (the file was replaced) or a size below the offset
(truncated) restarts the source at 0 with ``reset``.

``Tails.poll`` reads at most ``budget`` bytes over all runs per call, round-robin, so a
chatty job cannot take the channel from the GPU samples. Stdlib only, Python >= 3.8.
"""

import json
import os
import time

import eventfiles
import rundir
import tfevents

LOG = "output.log"
METRICS = "metrics.jsonl"
TB_PREFIX = "tb/"
WD_PREFIX = "wd/"
LOG_CHUNK = 256 * 1024
METRICS_CHUNK = 256 * 1024
TB_CHUNK = 1024 * 1024
MAX_POINTS = 5000
MAX_TB_FILES = 1000
DISCOVER_EVERY_S = 1.0
# The working folder may be big (a project tree): looked through less often.
DISCOVER_WORKDIR_EVERY_S = 5.0
_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"),
               "+inf": float("inf"), "infinity": float("inf"), "-infinity": float("-inf")}


def valid_source(source):
    """Whether ``source`` names a file a run may have tailed (never outside its folder)."""
    if source in (LOG, METRICS):
        return True
    if not isinstance(source, str) or "\0" in source \
            or not source.startswith((TB_PREFIX, WD_PREFIX)):
        return False
    parts = source[len(TB_PREFIX):].split("/")
    return all(part not in ("", ".", "..") for part in parts) \
        and eventfiles.is_event_file(parts[-1])


def _number(value):
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return float("inf") if value > 0 else float("-inf")
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower())
    return None


def _join_warnings(warnings):
    if len(warnings) <= 3:
        return "; ".join(warnings)
    return "; ".join(warnings[:3]) + "; and %d more like these" % (len(warnings) - 3)


def parse_metrics(data, start, source, mtime, max_points=MAX_POINTS):
    """Points and params of the complete lines in ``data`` (read at byte ``start``), as
    (bytes consumed, points, params, warnings). Stops after the line that reaches
    ``max_points``; bad lines are skipped with a warning naming their offset."""
    points = []
    params = {}
    warnings = []
    pos = 0
    end = len(data)
    while pos < end and len(points) < max_points:
        newline = data.find(b"\n", pos)
        if newline < 0:
            break
        line = data[pos:newline].strip()
        where = start + pos
        pos = newline + 1
        if not line:
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            warnings.append("%s: line at byte %d is not valid JSON; skipped" % (source, where))
            continue
        if not isinstance(obj, dict):
            warnings.append("%s: line at byte %d is not a JSON object; skipped"
                            % (source, where))
            continue
        if isinstance(obj.get("params"), dict):
            params.update(obj["params"])
        metrics = obj.get("m")
        if metrics is None:
            continue
        if not isinstance(metrics, dict):
            warnings.append("%s: line at byte %d has no metrics object; skipped"
                            % (source, where))
            continue
        step = obj.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if isinstance(step, bool) or not isinstance(step, int):
            step = None
        wall = _number(obj.get("t"))
        if wall is None or wall != wall or wall in (float("inf"), float("-inf")):
            wall = mtime
        dropped = []
        for series, raw in metrics.items():
            value = _number(raw)
            if value is None or not series:
                dropped.append(series)
                continue
            points.append((str(series), step, wall, value))
        if dropped:
            warnings.append("%s: line at byte %d: non-numeric value(s) of %s skipped"
                            % (source, where, ", ".join(repr(s) for s in dropped[:5])))
    return pos, points, params, warnings


class Source(object):
    """One file of a run, tailed from ``offset`` (bytes) of inode ``inode``."""

    def __init__(self, run_id, path, name, offset):
        self.run_id = run_id
        self.name = name
        self.path = path
        self.offset = max(0, int(offset))
        self.inode = None  # unknown until first seen: the given offset applies to it
        self.last_error = None

    def _reset(self, inode):
        self.inode = inode
        self.offset = 0

    def poll(self, budget, send):
        """Send at most one chunk of new content; the number of bytes it covered."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return 0  # not written yet (or gone between rotations): wait
        except OSError as exc:
            return self._error("cannot open %s: %s" % (self.name, exc.strerror), send)
        try:
            st = os.fstat(fd)
            reset = False
            if self.inode is None:
                self.inode = st.st_ino
            elif st.st_ino != self.inode:
                self._reset(st.st_ino)
                reset = True
            if st.st_size < self.offset:
                self._reset(st.st_ino)
                reset = True
            if st.st_size == self.offset and not reset:
                return 0
            self.last_error = None
            return self._read(fd, st, budget, reset, send)
        except OSError as exc:
            return self._error("cannot read %s: %s" % (self.name, exc.strerror), send)
        finally:
            os.close(fd)

    def _error(self, message, send):
        if message != self.last_error:  # say it once, not every tick
            self.last_error = message
            send(self.name, self.inode or 0, self.offset, self.offset, warning=message)
        return 0

    def _read(self, fd, st, budget, reset, send):
        start = self.offset
        available = st.st_size - start
        if self.name == LOG:
            data = os.pread(fd, min(LOG_CHUNK, budget, available), start) if available else b""
            self.offset = start + len(data)
            send(self.name, self.inode, start, self.offset, data=data, reset=reset)
            return len(data)
        if self.name == METRICS:
            return self._read_metrics(fd, st, budget, reset, send)
        batch = tfevents.read_records(
            lambda at, n: os.pread(fd, n, at), start, st.st_size, self.name,
            prefix=_series_prefix(self.name), max_bytes=min(TB_CHUNK, max(budget, 4096)),
            max_points=MAX_POINTS)
        if batch.end == start and not reset and not batch.warnings:
            return 0
        self.offset = batch.end
        send(self.name, self.inode, start, batch.end, points=batch.points,
             params=batch.params, reset=reset, warning=_join_warnings(batch.warnings))
        return batch.end - start

    def _read_metrics(self, fd, st, budget, reset, send):
        start = self.offset
        want = min(METRICS_CHUNK, max(budget, 4096), st.st_size - start)
        data = os.pread(fd, want, start) if want > 0 else b""
        if b"\n" not in data:
            if len(data) < METRICS_CHUNK:
                if reset:
                    send(self.name, self.inode, start, start, reset=True)
                return 0  # a partial line: wait for the rest of it
            return self._skip_long_line(fd, st, start, reset, send)
        used, points, params, warnings = parse_metrics(data, start, self.name, st.st_mtime)
        self.offset = start + used
        send(self.name, self.inode, start, self.offset, points=points, params=params,
             reset=reset, warning=_join_warnings(warnings))
        return used

    def _skip_long_line(self, fd, st, start, reset, send):
        """A line longer than a whole chunk is not a metrics line: skip to its end."""
        at = start + METRICS_CHUNK
        while at < st.st_size:
            block = os.pread(fd, 65536, at)
            if not block:
                break
            newline = block.find(b"\n")
            if newline >= 0:
                self.offset = at + newline + 1
                send(self.name, self.inode, start, self.offset, reset=reset,
                     warning="%s: line at byte %d is over %d bytes; skipped"
                     % (self.name, start, METRICS_CHUNK))
                return self.offset - start
            at += len(block)
        return 0


def _series_prefix(name):
    """``tb/train/events…`` → ``train/``: TF2 writes train/ and validation/ folders
    with the same tags, which must stay apart. In the working folder only a split's
    folder names series (``logs/validation/…`` → ``validation/``), not a run folder
    named after the date and host."""
    if name.startswith(WD_PREFIX):
        return eventfiles.series_prefix(name[len(WD_PREFIX):])
    folder = os.path.dirname(name[len(TB_PREFIX):])
    return folder + "/" if folder else ""


class Watch(object):
    """Every source of one run."""

    def __init__(self, run_id, offsets):
        self.run_id = run_id
        self.folder = rundir.run_dir(run_id)
        self.offsets = dict(offsets)
        self.sources = {}
        self.next_discovery = 0.0
        self.next_workdir = 0.0
        self.workdir = None  # (path, the run's own?) once the job is known
        for name in (LOG, METRICS):
            self.add(name)
        for name in self.offsets:
            if name.startswith((TB_PREFIX, WD_PREFIX)):
                self.add(name)

    def _workdir(self):
        if self.workdir is None:
            job = rundir.read_json(os.path.join(self.folder, rundir.JOB))
            if job is not None:
                path = os.path.realpath(rundir.job_cwd(job, self.folder))
                own = os.path.realpath(self.folder) + os.sep
                self.workdir = (path, path.startswith(own))
        return self.workdir

    def add(self, name):
        if name in self.sources or len(self.sources) >= MAX_TB_FILES + 2:
            return
        if name.startswith(WD_PREFIX):
            workdir = self._workdir()
            if workdir is None:
                return  # the job is not known yet: asked again at the next discovery
            path = os.path.join(workdir[0], *name[len(WD_PREFIX):].split("/"))
        else:
            path = os.path.join(self.folder, *name.split("/"))
        self.sources[name] = Source(self.run_id, path, name, self.offsets.get(name, 0))

    def update(self, offsets):
        """A repeated watch: sources already tailed keep their place (they are ahead of
        whatever the app has committed); new ones start where it says."""
        for name, offset in offsets.items():
            self.offsets.setdefault(name, offset)
            if name.startswith((TB_PREFIX, WD_PREFIX)):
                self.add(name)

    def discover(self, now):
        if now >= self.next_workdir:
            self.next_workdir = now + DISCOVER_WORKDIR_EVERY_S
            self._discover_workdir()
        if now < self.next_discovery:
            return
        self.next_discovery = now + DISCOVER_EVERY_S
        top = os.path.join(self.folder, rundir.TB)
        found = 0
        for path, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if eventfiles.is_event_file(name):
                    rel = os.path.relpath(os.path.join(path, name), top).replace(os.sep, "/")
                    self.add(TB_PREFIX + rel)
                    found += 1
            if found >= MAX_TB_FILES:
                return


    def _discover_workdir(self):
        for name in [n for n in self.offsets if n.startswith(WD_PREFIX)]:
            self.add(name)  # offsets given before the job was known
        workdir = self._workdir()
        if workdir is None or not os.path.isdir(workdir[0]):
            return
        job = None
        if not workdir[1]:
            state = rundir.read_json(os.path.join(self.folder, rundir.STATE)) or {}
            if isinstance(state.get("pgid"), int):
                job = {"sid": state["pgid"], "since": state.get("start_time") or 0}
        claimed = {n[len(WD_PREFIX):] for n in self.sources if n.startswith(WD_PREFIX)}
        for rel in eventfiles.find(workdir[0], workdir[1], job, claimed):
            self.add(WD_PREFIX + rel)


class Tails(object):
    """The watched runs; ``send(**tail fields)`` is called for every chunk."""

    def __init__(self, send):
        self.send = send
        self.watches = {}
        self.turn = 0

    def watch(self, run_id, offsets):
        """Start (or keep) tailing ``run_id``; raises ValueError for a bad request."""
        rundir.run_dir(run_id)  # validates the id
        if not isinstance(offsets, dict):
            raise ValueError("watch needs an offsets object")
        clean = {}
        for name, offset in offsets.items():
            if not valid_source(name):
                raise ValueError("not a run file: %r" % (name,))
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError("offset of %s must be a non-negative integer" % name)
            clean[name] = offset
        if run_id in self.watches:
            self.watches[run_id].update(clean)
        else:
            self.watches[run_id] = Watch(run_id, clean)

    def unwatch(self, run_id):
        self.watches.pop(run_id, None)

    def poll(self, budget, now=None):
        """One round over every source; returns the bytes covered (0 = nothing new)."""
        now = time.monotonic() if now is None else now
        runs = list(self.watches.values())
        if not runs:
            return 0
        self.turn = (self.turn + 1) % len(runs)
        used = 0
        for watch in runs[self.turn:] + runs[:self.turn]:
            try:
                watch.discover(now)
            except OSError:
                pass
            for source in list(watch.sources.values()):
                if used >= budget:
                    return used

                def emit(name, inode, start, end, run_id=watch.run_id, **fields):
                    self.send(run_id, name, inode, start, end, **fields)

                used += source.poll(budget - used, emit)
        return used
