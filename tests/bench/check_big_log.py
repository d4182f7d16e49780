"""A run whose console is a gigabyte, end to end: capture, store, the run window.

    .venv/bin/python tests/bench/check_big_log.py [MB] [--screenshot PATH]

A real sshd host (the test lab fixture) runs a job that writes MB megabytes (default 1024)
of mixed console: log prose, tqdm progress bars with carriage returns, metric lines,
garbage and non-UTF-8 bytes. ``labdeck serve --until-done`` captures it. Then:

- the stored console must equal the host's ``output.log`` byte for byte (sha256), and the
  metric lines must all be stored as points;
- ``labdeck serve``'s peak RSS is printed (it must not grow with the size of the log);
- the run window opens the run offscreen, shows the console's last page, pages back once,
  finds a line, and its screenshot is saved; the longest GUI-thread stall is printed.

Not a pytest module: it takes minutes and its timings are for reading. Exits 1 on a
mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from tests.harness.labapp import LabApp, run_dirs
from tests.harness.sshd import SshdLab

# One block of console, repeated; every 1000th block's step is a metric line.
JOB = r"""
import os, sys
total = int(sys.argv[1]) * 1024 * 1024
out = sys.stdout.buffer
block = (b"2026-11-23 03:00:00,001 INFO trainer: saved checkpoint shard to /scratch/x.pt\n"
         b"Epoch 3:  45%|####5     | 450/1000 [00:10<00:12, 43.2it/s]\r" * 3 + b"\n"
         b"garbage \x00\xff\xfe line with bytes that are not UTF-8 \xc3\x28\n")
written, step = 0, 0
while written < total:
    line = b"step %d | loss: %.6f acc=%.4f\n" % (step, 1.0 / (step + 1), step % 97 / 97)
    chunk = block * 64 + line
    out.write(chunk)
    written += len(chunk)
    step += 1
out.flush()
print("steps", step, file=sys.stderr)
"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stored_sha256(ms: MetricStore, key: str) -> tuple[str, int]:
    digest, pos, size = hashlib.sha256(), 0, ms.log_size(key)
    while pos < size:
        part = ms.log_bytes(key, pos, min(size, pos + (8 << 20)))
        digest.update(part)
        pos += len(part)
    return digest.hexdigest(), size


def peak_rss_mib(pid: int) -> float:
    """The process's RSS high-water mark (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def steps_written(host_log: Path) -> int:
    with host_log.open("rb") as f:
        f.seek(max(0, host_log.stat().st_size - 200))
        tail = f.read().splitlines()
    return int(tail[-1].split()[1])  # the job's last line: "steps N"


def check_window(store_path: Path, run_id: str, screenshot: Path | None) -> float:
    from PySide6.QtCore import QElapsedTimer, QTimer

    from app.ui.common.context import RunContext
    from app.ui.run_window.window import open_run_window
    from app.ui.shell.app import create_application

    app = create_application([])
    store = Store.open(store_path)
    runstore, ms = RunStore(store), MetricStore(store)
    stalls: list[float] = []
    clock = QElapsedTimer()
    beat = QTimer(interval=0)
    beat.timeout.connect(lambda: stalls.append(clock.restart() / 1000))
    clock.start()
    beat.start()
    t0 = time.perf_counter()
    window = open_run_window(run_id, RunContext(runstore, ms, None))
    window.resize(1280, 800)
    window.show()
    window.tabs.setCurrentWidget(window.console)

    def spin(done: object, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            app.processEvents()
            if time.monotonic() > end:
                raise SystemExit("the run window did not show the console in time")
            time.sleep(0.005)

    spin(lambda: "step" in window.console.plain_text())
    shown = time.perf_counter() - t0
    last_page = window.console.plain_text()
    window.console.load_earlier()
    spin(lambda: len(window.console.plain_text()) > len(last_page))
    window.console.search.setText("acc=")
    app.processEvents()
    found = window.console.find_next(backward=True)
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    if screenshot is not None:
        window.grab().save(str(screenshot))
    beat.stop()
    print(f"run window: console shown in {shown:.2f} s, last page "
          f"{len(last_page):,} characters, one page back then "
          f"{len(window.console.plain_text()):,}, search found a line: {found}, "
          f"longest GUI-thread stall {max(stalls) * 1000:.0f} ms")
    window.close()
    store.close()
    return max(stalls)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mb", nargs="?", type=int, default=1024)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labdeck-big-log-") as tmp:
        root = Path(tmp)
        lab = SshdLab(root / "lab")
        host = lab.add_host("bigbox")
        app = LabApp(root / "app", [host])
        try:
            job = root / "big_log_job.py"
            job.write_text(JOB)
            (run_id,) = app.submit(str(job), "--", str(args.mb))
            t0 = time.perf_counter()
            serve = app.serve("--until-done", "--poll", "1")
            peak = 0.0
            while serve.poll() is None:
                peak = max(peak, peak_rss_mib(serve.pid))
                time.sleep(0.5)
            code = serve.wait()
            took = time.perf_counter() - t0
            run = app.run(run_id)
            print(f"serve exit {code}; run {run.state} (exit {run.exit_code}) in {took:.0f} s")
            (folder,) = [p for name, p in run_dirs(host).items() if name.startswith(run_id)]
            host_log = folder / "output.log"
            with Store.open(app.store_path) as store:
                ms = MetricStore(store)
                key = run.host_run_id
                stored, size = stored_sha256(ms, key)
                series = {s.name: s.count for s in ms.series(key)}
            same = stored == sha256_of(host_log)
            steps = steps_written(host_log)
            points_ok = series.get("loss") == steps and series.get("acc") == steps
            print(f"console: host {host_log.stat().st_size:,} bytes, stored {size:,} bytes, "
                  f"sha256 {'equal' if same else 'DIFFERENT'}; "
                  f"{took and host_log.stat().st_size / took / 2**20:.1f} MiB/s end to end; "
                  f"points per series {series} for {steps:,} metric lines "
                  f"({'all stored' if points_ok else 'NOT all stored'}); "
                  f"labdeck serve peak RSS {peak:.0f} MiB")
            stall = check_window(app.store_path, run_id, args.screenshot)
            ok = (code == 0 and run.state is RunState.SUCCEEDED and same and points_ok
                  and stall < 1.0)
            print("OK" if ok else "FAILED")
            return 0 if ok else 1
        finally:
            app.close()
            lab.close()


if __name__ == "__main__":
    sys.exit(main())
