"""What a comparison reads from the store, on its data worker: the runs, their parameters
and metric summaries as plain data, and the layout remembered for their metrics.

Each run is read at its current attempt (``Run.host_run_id``), the id its curves are stored
under. Parameters are the job spec's, overlaid with what the run recorded itself
(``labdeck.init``, TensorBoard hparams): those are what the run actually used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.metrics.metricstore import MetricStore, SeriesInfo
from app.core.queue.runs import RunState
from app.core.queue.runstore import RunStore
from app.core.store import Store
from app.ui.common.params_view import flatten, show

LAYOUT_SETTING = "compare.layout"
MAX_LAYOUTS = 50  # one per set of metric names; the least recently used go first


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    run_id: str
    key: str  # the metric store's id of the current attempt
    name: str
    state: RunState
    host: str | None
    gpus: tuple[int, ...]
    started_at: float | None
    params: dict[str, str]  # flattened name → value as shown
    infos: tuple[SeriesInfo, ...] = field(default_factory=tuple)

    @property
    def live(self) -> bool:
        return not self.state.finished

    def detail(self) -> str:
        place = f"{self.host}:{','.join(str(g) for g in self.gpus)}" if self.host else ""
        return " · ".join(p for p in (self.state.value, place) if p)


def load_snapshots(runstore: RunStore, metricstore: MetricStore,
                   run_ids: Iterable[str]) -> tuple[list[RunSnapshot], list[str]]:
    """Snapshots of the runs still in the store, and the ids that are not (deleted)."""
    found, missing = [], []
    for run_id in run_ids:
        run = runstore.get(run_id)
        if run is None:
            missing.append(run_id)
            continue
        key = run.host_run_id
        spec_params = run.params or run.spec.get("params") or {}
        merged = {**flatten(spec_params), **flatten(metricstore.params(key))}
        found.append(RunSnapshot(
            run_id=run.id, key=key, name=run.name, state=run.state, host=run.host,
            gpus=tuple(run.gpus), started_at=run.started_at,
            params={name: show(value) for name, value in merged.items()},
            infos=tuple(metricstore.series(key)),
        ))
    return found, missing


def unique_labels(snapshots: Sequence[RunSnapshot]) -> dict[str, str]:
    """Run id → its name, with the id's tail added where two runs share a name."""
    counts: dict[str, int] = {}
    for snap in snapshots:
        counts[snap.name] = counts.get(snap.name, 0) + 1
    return {s.run_id: s.name if counts[s.name] == 1 else f"{s.name} ({s.run_id[-6:]})"
            for s in snapshots}


# -- remembered layouts ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CompareLayout:
    metrics: tuple[str, ...]  # the plotted ones
    x_mode: str
    smoothing: float
    log_y: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "x_mode": self.x_mode,
                "smoothing": self.smoothing, "log_y": self.log_y}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompareLayout | None:
        try:
            return cls(tuple(str(m) for m in data["metrics"]), str(data["x_mode"]),
                       float(data["smoothing"]), bool(data.get("log_y", False)))
        except (KeyError, TypeError, ValueError):
            return None  # written by another version: start from the defaults


def signature(names: Collection[str]) -> str:
    """The key of a set of metric names (order and repeats do not matter)."""
    return json.dumps(sorted(set(names)))


def load_layout(store: Store, names: Collection[str]) -> CompareLayout | None:
    if not names:
        return None
    saved = store.get_setting(LAYOUT_SETTING, {})
    entry = saved.get(signature(names)) if isinstance(saved, dict) else None
    return CompareLayout.from_json(entry) if isinstance(entry, dict) else None


def save_layout(store: Store, names: Collection[str], layout: CompareLayout) -> None:
    """Remember ``layout`` for this set of metric names (read-modify-write under the
    store's lock, so two comparison windows of this process do not lose each other's)."""
    if not names:
        return
    with store.lock:
        saved = store.get_setting(LAYOUT_SETTING, {})
        if not isinstance(saved, dict):
            saved = {}
        saved[signature(names)] = {**layout.to_json(), "used": time.time()}
        if len(saved) > MAX_LAYOUTS:
            by_age = sorted(saved, key=lambda k: float(saved[k].get("used", 0.0))
                            if isinstance(saved[k], dict) else 0.0)
            for old in by_age[: len(saved) - MAX_LAYOUTS]:
                del saved[old]
        store.set_setting(LAYOUT_SETTING, saved)
