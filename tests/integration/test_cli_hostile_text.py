"""Text a run or another user chose, through the real ``labdeck`` commands: no control
character reaches the terminal (except ``logs``, raw by design), no CSV cell is a
formula, and JSON keeps every name exact."""

from __future__ import annotations

import csv
import io
import json
import re
import time

from app.cli.gpus_cmd import render_table
from app.core.hosts.cluster import HostView
from app.core.jobs.jobspec import JobSpec
from app.core.queue.runs import RunState
from ssh_backend.hostspec import AgentOptions, HostSpec
from ssh_backend.protocol import (
    GpuProcess,
    GpuReading,
    GpuStatic,
    Hello,
    MetricPoint,
    Sample,
    TailChunk,
)
from ssh_backend.states import HostState
from tests.harness.labcli import StoreCli

TITLE, CLEAR, C1_RED = "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m"
FORMULAS = ['=HYPERLINK("http://x")', "+1+2", "@SUM(A1)", "-2+3"]
SERIES = [f"{TITLE}loss", f"{CLEAR}acc", f"{C1_RED}lr", "\u202egnp.exe", *FORMULAS]
CONSOLE = (f"{TITLE}epoch 1 {CLEAR}{C1_RED}red\x1b[0m\r\n 50%\r100%\n"
           f"{FORMULAS[0]} \u202eevil\x08\x07\n").encode() + b"\x9b2J raw byte\n"
# Anything a terminal would act on; tabs and newlines are the output's own layout.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_run(store_cli: StoreCli) -> str:
    """A finished run whose name, tags, reason, series names and console are all hostile."""
    spec = JobSpec(name=f"{TITLE}job{CLEAR}", argv=("true",), tags=(f"{C1_RED}tag",))
    (run_id,) = store_cli.runs.submit([spec.to_dict()], f"al{TITLE}")
    assert store_cli.runs.claim(run_id, "ws1", [0], ["GPU-0"])
    assert store_cli.runs.transition(run_id, RunState.LAUNCHING, RunState.RUNNING)
    assert store_cli.runs.transition(run_id, RunState.RUNNING, RunState.FAILED, exit_code=1,
                                     ended_at=time.time(), reason=f"boom{CLEAR}\u202eevil\n2nd")
    points = tuple(MetricPoint(name, i, 1700000000.0 + i, -0.5 * i)
                   for i, name in enumerate(SERIES))
    store_cli.metrics.ingest([
        ("ws1", TailChunk(run_id, "metrics.jsonl", 1, 0, 100, points=points)),
        ("ws1", TailChunk(run_id, "output.log", 1, 0, len(CONSOLE), CONSOLE)),
    ])
    return run_id


def out(store_cli: StoreCli, *args: str) -> str:
    result = store_cli.raw(*args)
    assert result.returncode == 0, result.stderr
    assert not ACTIVE.search(result.stderr.decode())
    text = result.stdout.decode()
    assert not ACTIVE.search(text), text
    return text


def test_metrics_table_shows_hostile_series_names_inert(store_cli: StoreCli) -> None:
    run_id = hostile_run(store_cli)
    lines = out(store_cli, "metrics", run_id).splitlines()
    names = [line.split("\t")[0] for line in lines[1:]]
    assert len(names) == len(SERIES) and all(len(line.split("\t")) == 4 for line in lines)
    assert "\\x1b]0;pwned\\x07loss" in names and "\\x9b31mlr" in names
    assert "\\u202egnp.exe" in names


def test_metrics_csv_guards_formulas_and_keeps_numbers(store_cli: StoreCli) -> None:
    run_id = hostile_run(store_cli)
    rows = list(csv.reader(io.StringIO(out(store_cli, "metrics", run_id, "--csv"))))[1:]
    names = [row[0] for row in rows]
    for formula in FORMULAS:
        assert "'" + formula in names
    assert not [name for name in names if name[:1] in "=+-@\t\r"]
    assert "\\x1b[2Jacc" in names
    values = [row[3] for row in rows]
    assert "-0.5" in values and all(float(v) <= 0 for v in values)  # numbers unguarded


def test_metrics_json_keeps_names_exact_and_escaped(store_cli: StoreCli) -> None:
    run_id = hostile_run(store_cli)
    text = out(store_cli, "metrics", run_id, "--json")
    assert sorted(p["series"] for p in json.loads(text)["points"]) == sorted(SERIES)


def test_ls_and_show_print_a_hostile_run_inert(store_cli: StoreCli) -> None:
    run_id = hostile_run(store_cli)
    listing = out(store_cli, "ls")
    assert len(listing.splitlines()) == 2  # a newline in the reason breaks no row
    assert "\\x1b]0;pwned\\x07job\\x1b[2J" in listing
    shown = out(store_cli, "show", run_id)
    assert "boom\\x1b[2J\\u202eevil\\x0a2nd" in shown
    assert "al\\x1b]0;pwned\\x07" in shown
    json.loads(out(store_cli, "ls", "--json"))


def test_logs_is_raw_by_default_and_says_so(store_cli: StoreCli) -> None:
    run_id = hostile_run(store_cli)
    assert store_cli.raw("logs", run_id).stdout == CONSOLE
    helptext = " ".join(out(store_cli, "logs", "--help").split())
    assert "raw" in helptext and "escape sequences" in helptext and "--safe" in helptext


def test_logs_safe_prints_the_console_inert_and_readable(store_cli: StoreCli) -> None:
    run_id = hostile_run(store_cli)
    text = out(store_cli, "logs", run_id, "--safe")
    assert text.splitlines() == ["epoch 1 red", "100%",
                                 f"{FORMULAS[0]} \\u202eevil\\x08\\x07", "\\x9b2J raw byte"]
    # -f on a run whose host is gone prints what is stored, filtered the same way.
    assert out(store_cli, "logs", "-f", "--safe", run_id) == text


def test_gpus_table_shows_what_a_host_announces_inert() -> None:
    # Decoding may already clean a host's text; the table must not depend on it.
    proc = GpuProcess(pid=7, user=f"ev{TITLE}il", command=f"python {CLEAR}x.py\u202e",
                      mem_mib=100.0)
    reading = GpuReading(index=0, uuid="GPU-0", util_pct=1.0, mem_used_mib=1.0,
                         mem_total_mib=2.0, temp_c=30.0, power_w=1.0, power_limit_w=2.0,
                         fan_pct=None, processes=(proc,))
    hello = Hello(protocol=1, agent_version="1", hostname="h", boot_id="b", backend="nvml",
                  backend_detail="", simulated=False,
                  gpus=(GpuStatic(0, "GPU-0", f"H100{C1_RED}", 2.0, 2.0),))
    spec = HostSpec(name="ws1", hostname="ws1", agent=AgentOptions())
    views = [HostView(spec=spec, state=HostState.ONLINE, hello=hello,
                      sample=Sample(seq=1, time=1.0, gpus=(reading,))),
             HostView(spec=HostSpec(name="ws2", hostname="ws2", agent=AgentOptions()),
                      state=HostState.AGENT_FAILED, detail=f"agent said {TITLE}\nno")]
    text = render_table(views)
    assert not ACTIVE.search(text.replace("\n", "")), text
    assert "H100\\x9b31m" in text and "ev\\x1b]0;pwned\\x07il" in text
    assert "agent said \\x1b]0;pwned\\x07\\x0ano" in text
