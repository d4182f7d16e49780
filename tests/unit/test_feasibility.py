"""One rule for "could this run ever start?", the same at submit time (dialog and CLI)
and while a run waits: sizes, tags and the lab quota; an unknown host size says nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli.main import main
from app.core.jobs.feasibility import HostFacts, host_facts, impossible
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.hostspec import AgentOptions, HostSpec

FACTS = {"small": HostFacts(2, frozenset({"a100"})), "big": HostFacts(8, frozenset({"h100"}),
                                                                      quota=4)}


@pytest.mark.parametrize(("gpus", "hosts", "tags", "why"), [
    (2, (), (), None),
    (4, (), (), None),  # big's quota allows 4
    (5, (), (), "needs 5 GPUs on one host; the lab policy allows at most 4 per user on "
                "big, the roomiest host"),
    (3, ("small",), (), "needs 3 GPUs on one host; the largest eligible host (small) has 2"),
    (1, (), ("v100",), "wants the host tags v100, which no host has"),
    (2, (), ("a100",), None),
    (1, ("nowhere",), (), "names no known host (nowhere; see: labdeck hosts ls)"),
    (0, (), (), None),
])
def test_what_can_never_start(gpus: int, hosts: tuple[str, ...], tags: tuple[str, ...],
                              why: str | None) -> None:
    assert impossible(gpus, hosts, tags, FACTS) == why


def test_a_host_not_seen_yet_may_fit_anything() -> None:
    facts = {**FACTS, "new": HostFacts(None)}
    assert impossible(64, (), (), facts) is None
    assert impossible(64, ("small",), (), facts) is not None
    assert impossible(1, (), (), {}) == (
        "has no host to run on; add one with: labdeck hosts add NAME --ssh user@host")


def test_labdeck_submit_refuses_what_the_hosts_said_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path / "home"))
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    with Store.open() as store:
        store.add_host(HostSpec(name="ws1", hostname="10.0.0.1"))
        store.add_host(HostSpec(name="sim", agent=AgentOptions(backend="sim", sim_gpus=2)))
        store.note_host_said("ws1", 4, 2)  # as the dispatcher kept it, while online
        assert host_facts(store)["sim"] == HostFacts(2, frozenset(), None)
    assert main(["submit", str(script), "--gpus", "3"]) == 2
    err = capsys.readouterr().err
    assert "gpus: impossible: this run needs 3 GPUs on one host; the lab policy allows at " \
           "most 2 per user on ws1, the roomiest host" in err
    assert "nothing was queued" in err
    assert main(["submit", str(script), "--gpus", "2"]) == 0
    with Store.open() as store:
        assert [r.spec["gpus"] for r in RunStore(store).list_runs()] == [2]
