"""Finished-run events, the main metric, the settings round trip and the watched
conditions, over a real store where a store is involved."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.jobs.jobspec import JobSpec
from app.core.metrics.metricstore import MetricStore, SeriesInfo
from app.core.notify_events import (
    GPUS_FREE,
    RUN_STALLED,
    FinishTracker,
    FreeGpuWatch,
    NotifySettings,
    RunProgress,
    StallWatch,
    finished_event,
    format_duration,
    load_settings,
    main_metric,
    read_finished,
    save_settings,
)
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from ssh_backend.protocol import MetricPoint, TailChunk


def series(name: str, last: float) -> SeriesInfo:
    return SeriesInfo(name=name, count=10, first_step=0, last_step=9, last_value=last,
                      min_value=last, max_value=last)


def test_main_metric_prefers_a_loss_series_else_the_first() -> None:
    assert main_metric([series("acc", 0.9), series("train/loss", 0.2),
                        series("val/loss", 0.3)]).name == "train/loss"
    assert main_metric([series("lr", 1e-4), series("acc", 0.9)]).name == "acc"
    assert main_metric([series("Val/LOSS", 1.0)]).name == "Val/LOSS"
    assert main_metric([]) is None


@pytest.fixture
def stores(tmp_path: Path):
    store = Store.open(tmp_path / "labdeck.sqlite3")
    yield store, RunStore(store), MetricStore(store)
    store.close()


def _finished_run(runstore: RunStore, state: RunState, started: float, ended: float,
                  name: str = "resnet50-lr3e-4", **fields) -> str:
    spec = JobSpec(name=name, argv=("python", "train.py"))
    (run_id,) = runstore.submit([spec.to_dict()], user="alice")
    assert runstore.claim(run_id, "gpu-a", [0, 1], ["GPU-a-0", "GPU-a-1"])
    assert runstore.transition(run_id, RunState.LAUNCHING, RunState.RUNNING,
                               started_at=started, pid=4242)
    assert runstore.transition(run_id, RunState.RUNNING, state, ended_at=ended, **fields)
    return run_id


def test_finished_event_names_run_host_duration_and_final_loss(stores) -> None:
    _store, runstore, ms = stores
    run_id = _finished_run(runstore, RunState.SUCCEEDED, 1000.0, 1000.0 + 3725, exit_code=0)
    run = runstore.get(run_id)
    key = run.host_run_id
    points = (MetricPoint("acc", 1, 1.0, 0.5), MetricPoint("train/loss", 1, 1.0, 0.9),
              MetricPoint("train/loss", 2, 2.0, 0.123456))
    ms.ingest([("gpu-a", TailChunk(key, "metrics.jsonl", 1, 0, 100, points=points))])

    got = read_finished(runstore, ms, run_id)
    assert got is not None
    event = finished_event(*got)
    assert event.kind == "succeeded" and event.run_id == run_id and event.host == "gpu-a"
    assert event.title == "resnet50-lr3e-4 finished"
    assert event.body == "on gpu-a:0,1 · 1 h 02 min · train/loss 0.1235"


def test_failed_event_says_exit_code_and_reason(stores) -> None:
    _store, runstore, ms = stores
    run_id = _finished_run(runstore, RunState.FAILED, 50.0, 95.0, exit_code=3,
                           reason="CUDA out of memory")
    event = finished_event(*read_finished(runstore, ms, run_id))
    assert event.title.endswith(" failed")
    assert event.body == "on gpu-a:0,1 · 45 s · exit code 3 · CUDA out of memory"
    assert read_finished(runstore, ms, "nope-0000") is None


def test_tracker_says_finished_once_per_attempt(stores) -> None:
    _store, runstore, _ms = stores
    run_id = _finished_run(runstore, RunState.LOST, 1.0, 2.0)
    run = runstore.get(run_id)
    tracker = FinishTracker()
    assert tracker.is_new_finish(run)
    assert not tracker.is_new_finish(run)
    assert tracker.is_new_finish(replace(run, attempt=1))  # a retry finishing again
    assert not tracker.is_new_finish(replace(run, state=RunState.RUNNING, attempt=2))


def test_settings_round_trip_through_the_store_and_tolerate_junk(stores) -> None:
    store, _runstore, _ms = stores
    assert load_settings(store) == NotifySettings()
    chosen = NotifySettings(events=frozenset({"failed", "lost"}), quiet_when_focused=False,
                            free_gpus=2, stall_minutes=20.0, stall_runs=("abcd-1",))
    save_settings(store, chosen)
    assert load_settings(store) == chosen
    assert store.get_setting("notifications")["events"] == ["failed", "lost"]
    store.set_setting("notifications", {"events": ["bogus", "failed"], "free_gpus": "x",
                                        "stall_minutes": float("nan")})
    loaded = load_settings(store)
    assert loaded.events == frozenset({"failed"})
    assert loaded.free_gpus == 0 and loaded.stall_minutes == 0.0
    assert NotifySettings.from_dict(None) == NotifySettings()
    assert not chosen.wants("succeeded") and chosen.wants("failed")
    assert chosen.wants(GPUS_FREE) and chosen.wants(RUN_STALLED)


def test_free_gpu_watch_fires_once_per_episode() -> None:
    watch = FreeGpuWatch()
    assert watch.check({"gpu-a": 1, "gpu-b": 1}, 2) is None
    event = watch.check({"gpu-a": 1, "gpu-b": 3, "gpu-c": 2}, 2)
    assert event is not None and event.kind == GPUS_FREE
    assert event.title == "3 GPUs free on gpu-b" and "also gpu-c" in event.body
    assert watch.check({"gpu-b": 4}, 2) is None  # still holding: no repeat
    assert watch.check({"gpu-b": 0}, 2) is None
    assert watch.check({"gpu-a": 2}, 2).title == "2 GPUs free on gpu-a"
    assert watch.check({"gpu-a": 8}, 0) is None  # off


def test_stall_watch_needs_both_silence_and_idle_gpus() -> None:
    watch = StallWatch()
    t0 = 10_000.0

    def p(token: int, busy: bool | None, run_id: str = "run-a") -> RunProgress:
        return RunProgress(run_id, "bert-base", "gpu-a", (token,), busy)

    assert watch.check([p(1, False)], 5, now=t0) == []
    # Output keeps coming: not stalled, however idle the GPU.
    assert watch.check([p(2, False)], 5, now=t0 + 200) == []
    assert watch.check([p(2, False)], 5, now=t0 + 400) == []
    # Silent and idle for 5 minutes since the last output.
    (event,) = watch.check([p(2, False)], 5, now=t0 + 500)
    assert event.kind == RUN_STALLED and event.run_id == "run-a"
    assert event.title == "bert-base stalled" and "5 min 00 s" in event.body
    assert watch.check([p(2, False)], 5, now=t0 + 900) == []  # once per stall
    # It wakes up (GPU busy) and stalls again later: a second event.
    assert watch.check([p(2, True)], 5, now=t0 + 1000) == []
    assert watch.check([p(2, False)], 5, now=t0 + 1200) == []
    assert len(watch.check([p(2, False)], 5, now=t0 + 1301)) == 1
    # Unknown GPU use is no evidence: never fires while the host is unreadable.
    assert watch.check([p(9, None, "run-b")], 1, now=t0) == []
    assert watch.check([p(9, None, "run-b")], 1, now=t0 + 3600) == []
    # Only the chosen runs are watched.
    w2 = StallWatch()
    w2.check([p(1, False), p(1, False, "run-c")], 1, only=("run-c",), now=t0)
    (only,) = w2.check([p(1, False), p(1, False, "run-c")], 1, only=("run-c",), now=t0 + 61)
    assert only.run_id == "run-c"


def test_format_duration() -> None:
    assert format_duration(None) == "unknown duration"
    assert format_duration(math.nan) == "unknown duration"
    assert format_duration(59.4) == "59 s"
    assert format_duration(61) == "1 min 01 s"
    assert format_duration(7260) == "2 h 01 min"
