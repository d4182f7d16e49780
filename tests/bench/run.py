"""The benchmark suite in one command: every figure next to its baseline, measured in the
same run, printed as a table and written to ``BENCHMARKS.md`` (repo root),
``tests/bench/results.json`` and the README's benchmark section.

    .venv/bin/python tests/bench/run.py            # quick mode (a few minutes)
    .venv/bin/python tests/bench/run.py --full     # bigger samples, longer windows
    .venv/bin/python tests/bench/run.py --only sampling,launch

Each group runs in a fresh interpreter (no Qt state, memory or page cache of one group
leaks into the next figure); only loopback networking is used. Missing a target is a
finding, not a failure: the exit code is non-zero only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.benchlib import FIELDS, REPO

GROUPS: dict[str, str] = {
    "sampling": "tests.bench.bench_sampling:measure",
    "lab_scale": "tests.bench.bench_lab_scale:measure",
    "tfevents": "tests.bench.figures_core:measure_tfevents",
    "ingest": "tests.bench.figures_core:measure_ingest",
    "plots": "tests.bench.figures_gui:measure_plots",
    "scheduler": "tests.bench.figures_core:measure_scheduler",
    "fairness": "tests.bench.bench_fairness:measure",
    "runs_table": "tests.bench.figures_gui:measure_runs_table",
    "launch": "tests.bench.bench_launch:measure",
    "startup": "tests.bench.bench_startup:measure",
}
RESULTS = REPO / "tests" / "bench" / "results.json"
MARKDOWN = REPO / "BENCHMARKS.md"
# Why the figures that miss their target miss it (found by profiling), kept by hand.
MISSES = Path(__file__).with_name("misses.md")
README = REPO / "README.md"
README_START, README_END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
MARK = "BENCH-RESULT "
GROUP_TIMEOUT_S = {"smoke": 120, "quick": 300, "full": 1200}


def child(group: str, mode: str) -> int:
    module, _, function = GROUPS[group].partition(":")
    rows = getattr(importlib.import_module(module), function)(mode)
    print(MARK + json.dumps(rows), flush=True)
    return 0


def run_group(group: str, mode: str, log: Path) -> list[dict[str, Any]]:
    """The group's figures from a child interpreter; one error row if it failed."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SSH_AUTH_SOCK", None)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", group, "--mode", mode]
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=GROUP_TIMEOUT_S[mode], stdin=subprocess.DEVNULL)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out"
        code = -1
    with log.open("a") as f:
        f.write(f"===== {group} ({mode}) exit {code}\n{output}\n")
    for line in reversed(output.splitlines()):
        if line.startswith(MARK) and code == 0:
            rows: list[dict[str, Any]] = json.loads(line[len(MARK):])
            for row in rows:
                row["group"] = group
            return rows
    tail = " | ".join(output.strip().splitlines()[-3:])[-300:]
    return [{"name": group, "group": group, "value": None, "baseline": None, "ratio": None,
             "target": "", "unit": "", "met": None, "error": f"exit {code}: {tail}"}]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem = 0.0
    return (f"{os.cpu_count()} CPU cores ({cpu}), {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "points/s":
        return f"{value / 1e3:,.0f}k points/s"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | Labdeck | baseline | ratio | target | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['name']} | error: {row['error']} | | | | ✗ |")
            continue
        base = show(row["baseline"], row["unit"])
        if row["baseline"] is not None and row.get("baseline_label"):
            base += f" ({row['baseline_label']})"
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.1f}×"
        met = {True: "✓", False: "✗ miss", None: ""}[row["met"]]
        lines.append(f"| {row['name']} | {show(row['value'], row['unit'])} | {base} | {ratio} "
                     f"| {row['target']} | {met} |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], mode: str, when: str, where: str, took: float) -> str:
    notes = [f"- **{r['name']}**: {r['note']}" for r in rows if r.get("note")]
    return "\n".join([
        "# Benchmarks", "",
        f"Produced by `python tests/bench/run.py{' --full' if mode == 'full' else ''}` "
        f"({mode} mode, {took:.0f} s). Each figure is measured next to its baseline in the "
        "same run; ratio = how many times better than the baseline (baseline time ÷ "
        "Labdeck time, or Labdeck throughput ÷ baseline throughput).", "",
        f"- machine: {where}", f"- date: {when}", "",
        table(rows), "", "## How each figure was measured", "", *notes, "",
        *([MISSES.read_text().rstrip(), ""] if MISSES.exists() else []),
    ])


def update_readme(text: str) -> None:
    readme = README.read_text()
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if pattern.search(readme):
        README.write_text(pattern.sub(lambda _m: f"{README_START}\n{text}\n{README_END}",
                                      readme))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick")
    size.add_argument("--full", dest="mode", action="store_const", const="full")
    size.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="tiny sizes: checks the plumbing, the figures mean nothing")
    parser.add_argument("--only", help="comma-separated groups: " + ",".join(GROUPS))
    parser.add_argument("--results", type=Path, help=f"default {RESULTS.relative_to(REPO)}")
    parser.add_argument("--markdown", type=Path, help="default BENCHMARKS.md")
    parser.add_argument("--child", choices=list(GROUPS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", dest="child_mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.child_mode)
    mode = args.mode or "quick"
    groups = args.only.split(",") if args.only else list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown groups: {', '.join(unknown)}")
    defaults = args.results is None and args.markdown is None and mode != "smoke"
    results = args.results or RESULTS
    md_path = args.markdown or MARKDOWN
    log = Path(tempfile.gettempdir()) / "labdeck-bench.log"  # every child's output
    log.write_text("")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for group in groups:
        t = time.perf_counter()
        got = run_group(group, mode, log)
        rows += got
        print(f"  {group:11s} {time.perf_counter() - t:5.1f} s  "
              + ("ERROR " + got[0]["error"] if got[0].get("error") else
                 ", ".join(r["name"] for r in got)), flush=True)
    took = time.perf_counter() - started
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    results.write_text(json.dumps({
        "mode": mode, "date": when, "machine": where, "seconds": round(took, 1),
        "fields": list(FIELDS), "benchmarks": rows}, indent=2) + "\n")
    md_path.write_text(markdown(rows, mode, when, where, took))
    if defaults:
        update_readme(f"{mode} mode, {when}, {where}:\n\n{table(rows)}")
    print(f"\n{table(rows)}\n\n{mode} mode, {took:.0f} s; wrote {results} and {md_path}"
          f" (log: {log})")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
