"""How a run's fields look in the runs table: cell text, tooltips, state colours and icons."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPainterPath, QPen, QPixmap

from app.core.queue.runs import RunState
from app.core.runs_catalog import RunRow
from app.ui.common.plain_text import display_text, tooltip_text
from app.ui.common.run_colors import STATE_COLORS
from app.ui.curves.plot_axes import format_duration
from app.ui.curves.series_table import format_value

ACTIVE = (RunState.LAUNCHING, RunState.RUNNING)
# (key, header) of the fixed columns, in display order; metric and parameter columns
# chosen by the user go between "duration" and "tags". Each key is a sort of
# ``app.core.queue.runs_filter.SORTS``.
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Name"), ("state", "State"), ("place", "Host:GPUs"), ("user", "User"),
    ("submitted", "Submitted"), ("started", "Started"), ("duration", "Duration"),
    ("reason", "Why"), ("tags", "Tags"), ("note", "Note"),
)


@dataclass(frozen=True, slots=True)
class Column:
    kind: str  # "base", "metric" or "param"
    key: str  # a BASE_COLUMNS key, a metric name, a parameter key
    title: str


def table_columns(metrics: Sequence[str] = (), params: Sequence[str] = ()) -> list[Column]:
    """The fixed columns, with chosen metric and parameter columns before Tags/Note."""
    base = [Column("base", key, title) for key, title in BASE_COLUMNS]
    split = [c.key for c in base].index("tags")
    return (base[:split] + [Column("metric", m, m) for m in dict.fromkeys(metrics)]
            + [Column("param", p, p) for p in dict.fromkeys(params)] + base[split:])


def dark_palette() -> bool:
    return QGuiApplication.palette().base().color().lightness() < 128


def state_color(state: RunState, dark: bool = False) -> QColor:
    color = QColor(STATE_COLORS.get(state, "#5f6368"))
    # The light theme's colours are too dark to read on a dark base: lift them.
    return color.lighter(175) if dark else color


def short_time(t: float | None, now: float | None = None) -> str:
    """``14:03`` today, ``3 Mar 14:03`` this year, ``2024-03-03`` before."""
    if not t:
        return ""
    when = datetime.datetime.fromtimestamp(t)
    today = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    if when.date() == today.date():
        return when.strftime("%H:%M")
    if when.year == today.year:
        return f"{when.day} {when.strftime('%b %H:%M')}"
    return when.strftime("%Y-%m-%d")


def full_time(t: float | None) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def duration(row: RunRow, now: float | None = None) -> float | None:
    if row.started_at is None:
        return None
    end = row.ended_at if row.ended_at is not None else (time.time() if now is None else now)
    return max(0.0, end - row.started_at)


def place(row: RunRow) -> str:
    if not row.host:
        hosts = row.spec.get("hosts") or []
        return f"→ {', '.join(hosts)}" if hosts else ""
    return f"{row.host}:{','.join(str(g) for g in row.gpus)}" if row.gpus else row.host


def state_text(row: RunRow) -> str:
    if row.cancel_requested and row.state in ACTIVE:
        return "cancelling"
    return row.state.value


def param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format_value(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def display(row: RunRow, column: Column, now: float | None = None) -> str:
    """The cell's text: names, reasons and tags come from hosts and labmates, so it is
    bounded (the view draws it plain)."""
    return display_text(_display(row, column, now))


def _display(row: RunRow, column: Column, now: float | None) -> str:
    if column.kind == "metric":
        value = row.metrics.get(column.key)
        return "" if value is None else format_value(value)
    if column.kind == "param":
        return param_text(row.params.get(column.key))
    key = column.key
    if key == "name":
        return row.name
    if key == "state":
        return state_text(row)
    if key == "place":
        return place(row)
    if key == "user":
        return row.user
    if key == "submitted":
        return short_time(row.created_at, now)
    if key == "started":
        return short_time(row.started_at, now)
    if key == "duration":
        seconds = duration(row, now)
        return "" if seconds is None else format_duration(seconds)
    if key == "reason":
        # Why a queued run waits (the scheduler's words), why one failed or was lost.
        return row.reason.splitlines()[0] if row.reason else ""
    if key == "tags":
        return ", ".join(row.tags)
    if key == "note":
        return row.note.splitlines()[0] if row.note else ""
    return ""


def tooltip(row: RunRow, column: Column) -> str | None:
    """The cell's tooltip, escaped where Qt would take it for rich text."""
    text = _tooltip(row, column)
    return None if text is None else tooltip_text(text)


def _tooltip(row: RunRow, column: Column) -> str | None:
    key = column.key if column.kind == "base" else ""
    if key == "name":
        return f"{row.name}\nid {row.id}" + (f" (attempt {row.attempt + 1})" if row.attempt else "")
    if key == "state":
        parts = [state_text(row)]
        if row.exit_code is not None:
            parts.append(f"exit code {row.exit_code}")
        if row.reason:
            parts.append(row.reason)
        return " · ".join(parts)
    if key == "submitted":
        queued = f"\nqueued again {full_time(row.queued_at)}" if row.attempt else ""
        return f"submitted {full_time(row.created_at)}{queued}"
    if key == "started":
        end = f"\nended {full_time(row.ended_at)}" if row.ended_at else ""
        return f"started {full_time(row.started_at)}{end}" if row.started_at else None
    if key == "note":
        return row.note or None
    if key == "reason":
        return row.reason or None
    if column.kind == "metric":
        value = row.metrics.get(column.key)
        return None if value is None else f"last {column.key} = {value!r}"
    return None


def is_numeric(row: RunRow, column: Column) -> bool:
    if column.kind == "metric" or (column.kind == "base" and column.key == "duration"):
        return True
    if column.kind == "param":
        value = row.params.get(column.key)
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False


@cache
def state_icon(state: RunState, dark: bool = False) -> QIcon:
    """A 16 px glyph per state: ring = waiting, dot = running, mark = how it ended."""
    size, ratio = 16, 2.0
    pixmap = QPixmap(int(size * ratio), int(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    color = state_color(state, dark)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    box = QRectF(2.5, 2.5, 11, 11)
    if state in (RunState.QUEUED, RunState.LAUNCHING):
        p.setPen(QPen(color, 1.8))
        p.drawEllipse(box)
        if state is RunState.LAUNCHING:
            p.setBrush(color)
            p.drawPie(box, 90 * 16, 180 * 16)
    else:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(color)
        p.drawEllipse(box)
        mark = QPen(QColor("#1e1e1e") if dark else QColor("white"), 1.8)
        mark.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(mark)
        p.setBrush(Qt.BrushStyle.NoBrush)
        c = box.center()
        if state is RunState.SUCCEEDED:
            path = QPainterPath(QPointF(c.x() - 3, c.y()))
            path.lineTo(c.x() - 0.8, c.y() + 2.4)
            path.lineTo(c.x() + 3.2, c.y() - 2.4)
            p.drawPath(path)
        elif state is RunState.FAILED:
            p.drawLine(QPointF(c.x() - 2.5, c.y() - 2.5), QPointF(c.x() + 2.5, c.y() + 2.5))
            p.drawLine(QPointF(c.x() - 2.5, c.y() + 2.5), QPointF(c.x() + 2.5, c.y() - 2.5))
        elif state is RunState.CANCELLED:
            p.drawLine(QPointF(c.x() - 3, c.y()), QPointF(c.x() + 3, c.y()))
        elif state is RunState.LOST:
            p.drawPoint(QPointF(c.x(), c.y() + 2.8))
            path = QPainterPath(QPointF(c.x() - 2, c.y() - 1.5))
            path.cubicTo(c.x() - 2, c.y() - 4.5, c.x() + 2.5, c.y() - 4.5, c.x() + 2.2, c.y() - 1.8)
            path.lineTo(c.x(), c.y() + 0.8)
            p.drawPath(path)
    p.end()
    return QIcon(pixmap)
