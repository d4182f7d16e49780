"""Coverage-guided fuzzing of the parsers with atheris, run by hand (pytest does not collect
this file, and atheris is not a dependency):

    pip install atheris            # a cp311 manylinux wheel; 3.0.0 is the one found here
    python tests/reliability/atheris_targets.py TARGET [libFuzzer flags, e.g. -runs=100000]

TARGET is one of: decode, agent_command, runctl, job_yaml, job_toml, console, smi, tfevents,
ssh_config. Each checks the contract of tests/reliability/fuzz_contract.py: any exception
other than the parser's own documented error is a finding (atheris reports it and stops).
"""

from __future__ import annotations

import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "ssh_backend" / "agent")]


def _targets() -> dict[str, Callable[[bytes], None]]:
    import agent as agent_main
    import gpu_smi
    import runctl
    import tfevents

    from app.core.console.parse import ConsoleSplitter, parse_line
    from app.core.jobs.jobfile import parse_job_text
    from app.core.jobs.jobspec import JobFileError
    from ssh_backend.config import ConfigError, resolve
    from ssh_backend.hostspec import HostSpec
    from ssh_backend.protocol import ProtocolError, decode

    folder = Path(tempfile.mkdtemp(prefix="labdeck-atheris-"))

    def decode_target(data: bytes) -> None:
        try:
            decode(data)
        except ProtocolError:
            pass

    def agent_command(data: bytes) -> None:
        out = io.BytesIO()
        agent = agent_main.Agent(agent_main.parse_args(["--backend", "none"]), io.BytesIO(),
                                 out)
        agent.handle(data, agent_main.NoBackend("off"))

    def runctl_target(data: bytes) -> None:
        if b"launch" not in data:  # a valid launch would start a job
            runctl.handle(data)

    def job(fmt: str) -> Callable[[bytes], None]:
        def target(data: bytes) -> None:
            try:
                parse_job_text(data, fmt=fmt, source="f", base_dir=folder)
            except JobFileError:
                pass
        return target

    def console(data: bytes) -> None:
        for line in ConsoleSplitter().feed(data):
            parse_line(line)

    def smi(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        for parse in (gpu_smi.parse_gpu_line, gpu_smi.parse_apps):
            try:
                parse(text)
            except ValueError:
                pass

    def tf(data: bytes) -> None:
        tfevents.read_records(lambda at, n: data[at : at + n], 0, len(data), "tb/x")

    def ssh_config(data: bytes) -> None:
        (folder / "config").write_bytes(data)
        try:
            resolve(HostSpec(name="gpu1", ssh_alias="gpu1"), folder / "config")
        except ConfigError:
            pass

    return {"decode": decode_target, "agent_command": agent_command, "runctl": runctl_target,
            "job_yaml": job("yaml"), "job_toml": job("toml"), "console": console, "smi": smi,
            "tfevents": tf, "ssh_config": ssh_config}


def main() -> None:
    import atheris  # only here: the module imports without it

    with atheris.instrument_imports():  # coverage feedback for the parsers' modules
        targets = _targets()
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(targets)}}} [libFuzzer flags]")
    target = targets[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
