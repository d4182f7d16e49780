"""labdeck: record a training run's metrics and parameters for Labdeck to plot.

    import labdeck
    run = labdeck.init(config=vars(args))        # or: with labdeck.init(...) as run:
    for i in range(steps):
        run.log({"loss": loss, "lr": lr, "val": {"acc": acc}}, step=i)  # val/acc
    run.finish()

Under Labdeck the job's folder is ``$LABDECK_RUN_DIR`` (set by the run wrapper, which
also puts this module on ``PYTHONPATH``): ``metrics.jsonl`` gets one line per ``log``
call, ``{"t": wall time, "step": i, "m": {name: value}}``, and ``params.json`` holds the
config (also written into metrics.jsonl as ``{"t": …, "params": {…}}`` so the app gets it
with the metrics). Without ``LABDECK_RUN_DIR`` (running the script by hand) nothing is
written and every call is a cheap no-op, unless ``init(run_dir=...)`` names a folder.

``log`` never blocks training: points go to a bounded in-memory buffer that a background
thread writes out every ``flush_interval`` seconds; when the buffer is full, new points
are dropped and counted (a warning on stderr says how many). Nested dicts are flattened
with "/"; values may be ints, floats, bools or anything with ``.item()`` / ``__float__``
(numpy and torch scalars); NaN and infinities are kept. ``step`` defaults to one more
than the previous call's. Stdlib only, Python >= 3.8.
"""

import atexit
import json
import math
import os
import sys
import threading
import time

__all__ = ["Run", "finish", "init", "log", "log_metric", "log_params"]

DEFAULT_FLUSH_S = 1.0
DEFAULT_MAX_BUFFER = 100000
_current = None


def _flatten(obj, prefix, out):
    for key, value in obj.items():
        name = prefix + str(key)
        if isinstance(value, dict):
            _flatten(value, name + "/", out)
        else:
            out[name] = value
    return out


def _number(value):
    """A float for a metric value, or None when it is not a number."""
    if isinstance(value, (bool, int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except Exception:
            return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _jsonable(obj):
    """Config values JSON can hold; anything else as its str()."""
    if isinstance(obj, dict):
        return dict((str(k), _jsonable(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _warn(message):
    try:
        sys.stderr.write("labdeck: %s\n" % message)
        sys.stderr.flush()
    except Exception:
        pass


class Run(object):
    """One run's recorder. ``folder`` None means a no-op run (outside Labdeck)."""

    def __init__(self, folder, config=None, flush_interval=DEFAULT_FLUSH_S,
                 max_buffer=DEFAULT_MAX_BUFFER):
        self.folder = folder
        self.flush_interval = max(0.01, float(flush_interval))
        self.max_buffer = max(1, int(max_buffer))
        self.params = {}
        self.dropped = 0
        self._step = -1
        self._lines = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._file = None
        self._thread = None
        self._skipped = set()
        if folder is None:
            return
        os.makedirs(folder, 0o700, exist_ok=True)
        fd = os.open(os.path.join(folder, "metrics.jsonl"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        self._file = os.fdopen(fd, "ab")
        if config:
            self.log_params(config)
        self._thread = threading.Thread(target=self._flusher, name="labdeck-flush",
                                        daemon=True)
        self._thread.start()

    @property
    def active(self):
        """Whether anything is being recorded."""
        return self._file is not None and not self._closed

    # -- recording ---------------------------------------------------------------
    def log(self, metrics, step=None):
        """Record ``metrics`` (name → number, nested dicts flattened with "/") at ``step``
        (default: the previous step + 1). Returns at once."""
        if not self.active:
            return
        if step is None:
            step = self._step + 1
        else:
            try:
                step = int(step)
            except (TypeError, ValueError):
                step = self._step + 1
        self._step = step
        values = {}
        for name, raw in _flatten(metrics, "", {}).items():
            value = _number(raw)
            if value is None:
                if name not in self._skipped:
                    self._skipped.add(name)
                    _warn("%r is not a number (%s); not recorded" % (name, type(raw).__name__))
                continue
            values[name] = value
        if values:
            self._append({"t": time.time(), "step": step, "m": values})

    def log_metric(self, name, value, step=None):
        """Record one value (MLflow-style alias of ``log``)."""
        self.log({name: value}, step=step)

    def log_params(self, params):
        """Record hyper-parameters (merged into those given before); nested dicts are
        flattened with "/". Written to params.json and metrics.jsonl."""
        if not self.active:
            return
        flat = _jsonable(_flatten(dict(params), "", {}))
        self.params.update(flat)
        self._append({"t": time.time(), "params": flat}, always=True)
        self._write_params()

    def _append(self, record, always=False):
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if len(self._lines) >= self.max_buffer and not always:
                self.dropped += 1
                return
            self._lines.append(line)
            full = len(self._lines) >= self.max_buffer // 2
        if full:
            self._wake.set()

    def _write_params(self):
        path = os.path.join(self.folder, "params.json")
        temp = "%s.tmp-%d" % (path, os.getpid())
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(self.params, sort_keys=True, indent=1).encode())
            os.replace(temp, path)
        except OSError as exc:
            _warn("cannot write %s: %s" % (path, exc))

    # -- writing -----------------------------------------------------------------
    def flush(self):
        """Write what is buffered now (the background thread does this regularly)."""
        with self._lock:
            lines, self._lines = self._lines, []
            dropped, self.dropped = self.dropped, 0
        if dropped:
            _warn("buffer full: %d log call(s) dropped" % dropped)
        if lines and self._file is not None:
            try:
                self._file.write(b"".join(lines))
                self._file.flush()
            except (OSError, ValueError) as exc:
                _warn("cannot write metrics: %s" % exc)

    def _flusher(self):
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def finish(self):
        """Write everything and close; later calls do nothing."""
        if self._file is None or self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self.flush()
        try:
            self._file.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.finish()
        return False


def init(config=None, run_dir=None, flush_interval=DEFAULT_FLUSH_S,
         max_buffer=DEFAULT_MAX_BUFFER):
    """Start recording: in ``run_dir``, else ``$LABDECK_RUN_DIR``, else nowhere (no-op).
    ``config`` (a dict, or an argparse Namespace) is recorded as the run's params."""
    global _current
    folder = run_dir or os.environ.get("LABDECK_RUN_DIR") or None
    if config is not None and not isinstance(config, dict):
        config = vars(config)
    if _current is not None:
        _current.finish()
    try:
        _current = Run(folder, config, flush_interval, max_buffer)
    except OSError as exc:
        _warn("cannot record in %s: %s; metrics are not recorded" % (folder, exc))
        _current = Run(None)
    return _current


def log(metrics, step=None):
    """``log`` on the run of the last ``init`` (a no-op before any)."""
    if _current is not None:
        _current.log(metrics, step)


def log_metric(name, value, step=None):
    if _current is not None:
        _current.log_metric(name, value, step)


def log_params(params):
    if _current is not None:
        _current.log_params(params)


def finish():
    if _current is not None:
        _current.finish()


atexit.register(finish)
