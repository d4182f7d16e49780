"""One GPU as a tile: name, load and memory with sparklines, temperature, power, fan, and
who is running what on it. A missing value (``None``) is shown as "—", never as 0."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.core.hosts.cluster import GpuHistory
from app.ui.cluster.sparkline import Sparkline
from app.ui.common.painted import Pill, RoundedFrame
from app.ui.common.plain_text import PlainLabel, display_text
from ssh_backend.protocol import GpuProcess, GpuReading

DASH = "—"
TILE_WIDTH = 286
MAX_PROCESS_ROWS = 3
# A GPU with no process and less memory in use than this counts as free (an idle H100
# holds ~480 MiB for the driver; one small CUDA context is already ~500 MiB more).
LOAD_COLOR = QColor("#1e6fd9")
_NOTHING = object()  # "nothing shown yet", distinct from None ("no data")
MEMORY_COLOR = QColor("#8e24aa")
FREE_COLOR = QColor("#2e7d32")
BUSY_COLOR = QColor("#b35c00")


def fmt_pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.0f} %"


def fmt_gib(mib: float | None) -> str:
    return DASH if mib is None else f"{mib / 1024:.1f}"


def fmt_memory(used: float | None, total: float | None) -> str:
    if used is None and total is None:
        return DASH
    return f"{fmt_gib(used)} / {fmt_gib(total)} GiB"


def fmt_power(power: float | None, limit: float | None) -> str:
    if power is None:
        return DASH if limit is None else f"{DASH} / {limit:.0f} W"
    return f"{power:.0f} W" if limit is None else f"{power:.0f} W / {limit:.0f} W"


def fmt_temp(temp: float | None) -> str:
    return DASH if temp is None else f"{temp:.0f} °C"


def fmt_process_mem(mib: float | None) -> str:
    if mib is None:
        return DASH
    return f"{mib:.0f} MiB" if mib < 1024 else f"{mib / 1024:.1f} GiB"


def short_gpu_name(name: str) -> str:
    # The host header already carries the "simulated" badge; the tile needs the model only.
    return name.removeprefix("NVIDIA ").removesuffix(" (simulated)").strip() or name


def short_command(command: str) -> str:
    """The command with its program's directory dropped: ``/opt/venv/bin/python x`` →
    ``python x``, so a narrow tile shows what runs rather than where it is installed."""
    program, sep, rest = command.partition(" ")
    return program.rsplit("/", 1)[-1] + sep + rest if "/" in program else command


def caption_label(text: str) -> QLabel:
    """A label in the palette's placeholder colour, for names of values."""
    label = PlainLabel(text)
    pal = label.palette()
    pal.setColor(QPalette.ColorRole.WindowText, pal.color(QPalette.ColorRole.PlaceholderText))
    label.setPalette(pal)
    return label


class ElidedLabel(PlainLabel):
    """A one-line label that elides its text to its width; the full text is the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent=parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.set_full_text(text)

    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str) -> None:
        text = display_text(text)
        if text != self._full:
            self._full = text
            self.setToolTip(text)
            self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.width(), 20)
        self.setText(QFontMetrics(self.font()).elidedText(
            self._full, Qt.TextElideMode.ElideRight, width))


class _ProcessRow(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        self.user = PlainLabel()
        bold = QFont(self.user.font())
        bold.setBold(True)
        self.user.setFont(bold)
        self.command = ElidedLabel()
        self.mem = PlainLabel()
        self.mem.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.user)
        row.addWidget(self.command, 1)
        row.addWidget(self.mem)

    def show_process(self, proc: GpuProcess) -> None:
        self.user.setText(proc.user or f"pid {proc.pid}")
        command = proc.command or f"pid {proc.pid}"
        self.command.set_full_text(short_command(command))
        self.command.setToolTip(f"{command}\n(pid {proc.pid}, user {proc.user or DASH})")
        self.mem.setText(fmt_process_mem(proc.mem_mib))


class GpuTile(RoundedFrame):
    """Shows one GPU; ``update_reading`` is cheap and called only from the display timer."""

    def __init__(self, index: int, name: str = "", parent: QWidget | None = None) -> None:
        role = QPalette.ColorRole
        super().__init__(6, role.Base, role.Midlight, role.Window, parent)
        self.index = index
        self.setObjectName("GpuTile")
        self.setFixedWidth(TILE_WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 8)
        outer.setSpacing(4)

        self._add_title(outer)
        self._add_readings(outer)
        self._add_stats(outer)
        self._add_processes(outer)

        self.free: bool | None = None
        # What the widgets show now, so an unchanged sample costs no widget work.
        self._shown: object = _NOTHING
        self._chip_shown: bool | object | None = _NOTHING
        self._processes_shown: tuple[tuple[GpuProcess, ...], str] | None = None
        self.set_name(name)
        self.update_reading(None)

    def _add_title(self, outer: QVBoxLayout) -> None:
        """The title and the state chip."""
        head = QHBoxLayout()
        self.title_label = ElidedLabel()
        self.title_label.setObjectName("gpuTitle")
        title_font = QFont(self.title_label.font())
        title_font.setBold(True)
        self.title_label.setFont(title_font)
        self.chip = Pill(bold=True)
        self.chip.setObjectName("chip")
        head.addWidget(self.title_label, 1)
        head.addWidget(self.chip)
        outer.addLayout(head)

    def _add_readings(self, outer: QVBoxLayout) -> None:
        """Load and memory with their sparklines."""
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(3)
        self.load_label = PlainLabel()
        self.load_label.setObjectName("load")
        self.mem_label = PlainLabel()
        self.mem_label.setObjectName("memory")
        self.load_spark = Sparkline(LOAD_COLOR)
        self.load_spark.setToolTip("GPU load, last 5 minutes")
        self.mem_spark = Sparkline(MEMORY_COLOR)
        self.mem_spark.setToolTip("Memory in use, last 5 minutes")
        for row, (caption, value, spark) in enumerate(
            (("Load", self.load_label, self.load_spark),
             ("Memory", self.mem_label, self.mem_spark))
        ):
            grid.addWidget(caption_label(caption), row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(spark, row, 2)
        grid.setColumnMinimumWidth(1, QFontMetrics(self.font()).horizontalAdvance(
            "00.0 / 00.0 GiB") + 4)
        grid.setColumnStretch(2, 1)
        outer.addLayout(grid)

    def _add_stats(self, outer: QVBoxLayout) -> None:
        """Temperature, power and fan."""
        stats = QHBoxLayout()
        self.temp_label = PlainLabel()
        self.temp_label.setObjectName("temperature")
        self.temp_label.setToolTip("GPU temperature")
        self.power_label = PlainLabel()
        self.power_label.setObjectName("power")
        self.power_label.setToolTip("Power draw / power limit")
        self.fan_label = PlainLabel()
        self.fan_label.setObjectName("fan")
        self.fan_label.setToolTip("Fan speed (— where the GPU has no fan it reports)")
        stats.addWidget(self.temp_label)
        stats.addStretch(1)
        stats.addWidget(self.power_label)
        stats.addStretch(1)
        stats.addWidget(caption_label("Fan"))
        stats.addWidget(self.fan_label)
        outer.addLayout(stats)

    def _add_processes(self, outer: QVBoxLayout) -> None:
        """Who runs what on it: one row per process, the same height on every tile."""
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        outer.addWidget(line)

        self.process_rows = [_ProcessRow() for _ in range(MAX_PROCESS_ROWS)]
        self.no_process_label = PlainLabel()
        self.no_process_label.setObjectName("noProcess")
        outer.addWidget(self.no_process_label)
        # Every tile keeps the same height (one line for "no process" or the first
        # process, then reserved lines) so rows of tiles line up.
        for i, row_widget in enumerate(self.process_rows):
            if i > 0:
                policy = row_widget.sizePolicy()
                policy.setRetainSizeWhenHidden(True)
                row_widget.setSizePolicy(policy)
            outer.addWidget(row_widget)
        self.more_label = PlainLabel()
        self.more_label.setObjectName("moreProcesses")
        outer.addWidget(self.more_label)
        outer.addStretch(1)

    # -- updates ---------------------------------------------------------------------
    def set_name(self, name: str) -> None:
        title = f"GPU {self.index}" + (f" · {short_gpu_name(name)}" if name else "")
        self.title_label.set_full_text(title)
        self.title_label.setToolTip(f"GPU {self.index}: {name}" if name else "")

    def seed(self, history: GpuHistory) -> None:
        self.load_spark.extend(history.times, history.util_pct)
        self.mem_spark.extend(history.times, history.mem_pct)

    def reseed(self, history: GpuHistory) -> None:
        """Replace the sparklines' points by ``history`` (after updates were skipped)."""
        self.load_spark.clear()
        self.mem_spark.clear()
        self.seed(history)
        self.load_spark.update()
        self.mem_spark.update()

    def update_reading(self, reading: GpuReading | None, received_at: float | None = None,
                       busy: str | None = None) -> None:
        """Show ``reading``; ``busy`` is why the GPU is not free for a new run (the core's
        rule: ``gpufree.gpu_busy_reason``), None when it is free."""
        if reading is not None and received_at is not None:
            self._append_sparks(reading, received_at)
        if (reading, busy) == self._shown:
            return
        self._shown = (reading, busy)
        if reading is None:
            for label in (self.load_label, self.mem_label, self.temp_label,
                          self.power_label, self.fan_label):
                label.setText(DASH)
            self._set_chip(None)
            self._show_processes((), "No data yet")
            return
        self.load_label.setText(fmt_pct(reading.util_pct))
        self.mem_label.setText(fmt_memory(reading.mem_used_mib, reading.mem_total_mib))
        self.temp_label.setText(fmt_temp(reading.temp_c))
        self.power_label.setText(fmt_power(reading.power_w, reading.power_limit_w))
        self.fan_label.setText(fmt_pct(reading.fan_pct))
        free = busy is None
        self._set_chip(free)
        if free:
            empty = "No processes"
        elif reading.processes:
            empty = ""
        else:  # reserved, leased, or memory used by processes this user cannot see
            empty = busy[:1].upper() + busy[1:] if busy else ""
        self._show_processes(reading.processes, empty)

    def process_texts(self) -> list[tuple[str, str, str]]:
        """(user, full command, memory) of the visible process rows, for tests and a11y."""
        return [(r.user.text(), r.command.full_text(), r.mem.text())
                for r in self.process_rows if not r.isHidden()]

    def _append_sparks(self, reading: GpuReading, received_at: float) -> None:
        self.load_spark.append(received_at, reading.util_pct)
        mem = None
        if reading.mem_used_mib is not None and reading.mem_total_mib:
            mem = 100.0 * reading.mem_used_mib / reading.mem_total_mib
        self.mem_spark.append(received_at, mem)
        self.load_spark.update()
        self.mem_spark.update()

    def _set_chip(self, free: bool | None) -> None:
        self.free = free
        # Only on a flip: most updates leave the chip as it is.
        if free == self._chip_shown:
            return
        self._chip_shown = free
        if free is None:
            self.chip.setText("")
            self.chip.setVisible(False)
            return
        self.chip.setVisible(True)
        self.chip.setText("free" if free else "busy")
        self.chip.setProperty("free", free)
        self.chip.set_color(FREE_COLOR if free else BUSY_COLOR)
        self.chip.setToolTip(
            "No process and little memory in use" if free else "Processes or memory in use"
        )

    def _show_processes(self, processes: tuple[GpuProcess, ...], empty: str) -> None:
        if self._processes_shown == (processes, empty):
            return
        self._processes_shown = (processes, empty)
        ordered = sorted(processes, key=lambda p: -(p.mem_mib or 0.0))
        for row, proc in zip(self.process_rows, ordered, strict=False):
            row.show_process(proc)
        for i, row in enumerate(self.process_rows):
            row.setVisible(i < len(ordered))
        self.no_process_label.setText(empty)
        self.no_process_label.setVisible(bool(empty))
        extra = len(ordered) - MAX_PROCESS_ROWS
        self.more_label.setText(f"+ {extra} more" if extra > 0 else "")
        self.more_label.setVisible(extra > 0)
