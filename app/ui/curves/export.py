"""Exports: asking where to save, and writing a run's stored metrics to CSV (on the data
worker: a run can hold millions)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtWidgets import QFileDialog, QWidget

from app.core.safetext import csv_text

CSV_HEADER = ("series", "step", "wall_time", "value")
EXPORT_FILTERS = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)",
                  "csv": "CSV table (*.csv)"}


def ask_export_path(parent: QWidget, kind: str, name: str) -> str:
    """The save dialog for a PNG/SVG/CSV export, starting at ~/<name>.<kind>; '' if
    cancelled."""
    path, _ = QFileDialog.getSaveFileName(parent, f"Export {kind.upper()}",
                                          str(Path.home() / f"{name}.{kind}"),
                                          EXPORT_FILTERS[kind])
    return path


def export_drawing(curves: Any, kind: str, path: str | Path) -> bool:
    """PNG or SVG of a curve panel as drawn now (on the GUI thread: it renders); False
    for any other kind, which the caller writes itself."""
    if kind == "png":
        curves.export_image(path)
    elif kind == "svg":
        curves.export_svg(path)
    else:
        return False
    return True


def write_metrics_csv(metricstore: Any, run_key: str, path: str | Path) -> int:
    """Every stored point as ``series,step,wall_time,value``; returns the row count.

    Floats are written with ``repr`` (exact round trip); a missing step is empty. The
    file is written next to the target and renamed, so a failed export leaves no half
    file behind.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.part")
    rows = 0
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_HEADER)
            for info in metricstore.series(run_key):
                arrays = metricstore.points(run_key, info.name)
                steps = _steps(np.asarray(arrays.step))
                walls = np.asarray(arrays.wall, dtype=np.float64).tolist()
                values = np.asarray(arrays.value, dtype=np.float64).tolist()
                name = csv_text(info.name)  # the run's text; the numbers stay numbers
                writer.writerows(
                    (name, s, repr(w), repr(v))
                    for s, w, v in zip(steps, walls, values, strict=True)
                )
                rows += len(values)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _steps(step: np.ndarray) -> list[str]:
    if np.issubdtype(step.dtype, np.integer):
        return [str(s) for s in step.tolist()]
    return ["" if not math.isfinite(s) else str(int(s)) for s in step.tolist()]
