"""One host in the cluster view: a header that says plainly what state it is in, and a
wrapping flow of its GPU tiles (greyed while the data is not live)."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.core.hosts.cluster import GpuHistory, HostView
from app.core.queue.gpufree import Policy, gpu_busy_reason
from app.ui.cluster.gpu_tile import GpuTile
from app.ui.common.flow_layout import FlowLayout
from app.ui.common.painted import Pill, RoundedFrame
from app.ui.common.plain_text import PlainLabel
from ssh_backend.protocol import GpuReading
from ssh_backend.states import HostState

STATE_COLORS = {
    HostState.CONNECTING: "#1565c0",
    HostState.ONLINE: "#2e7d32",
    HostState.STALE: "#a15c00",
    HostState.OFFLINE: "#5f6368",
    HostState.AUTH_FAILED: "#c62828",
    HostState.HOSTKEY_UNKNOWN: "#c25400",
    HostState.HOSTKEY_CHANGED: "#b71c1c",
    HostState.NEEDS_REBOOT: "#6a1b9a",
    HostState.AGENT_FAILED: "#c62828",
    HostState.STOPPED: "#5f6368",
}

# Said when the session gave no sentence of its own; always "what happened, what to do".
DEFAULT_DETAIL = {
    HostState.CONNECTING: "Connecting…",
    HostState.STALE: "Connected, but no new readings arrive: the values shown are old.",
    HostState.OFFLINE: "Not reachable. Labdeck keeps retrying in the background.",
    HostState.AUTH_FAILED: "The host refused the login. Check the user name and key file, "
    "then press Reconnect.",
    HostState.HOSTKEY_UNKNOWN: "Labdeck has not seen this host's key before. Press Trust… "
    "to compare its fingerprint and connect.",
    HostState.NEEDS_REBOOT: "The GPU driver was updated but the old one is still loaded: "
    "reboot the host to see its GPUs again.",
    HostState.AGENT_FAILED: "Connected, but the Labdeck agent cannot run there "
    "(is python3 ≥ 3.8 installed?).",
}
CHANGED_KEY_WARNING = (
    "The host's key is different from the one accepted before. This can mean an attack; "
    "Labdeck will not connect. Press “What to do…” before anything else."
)


def format_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _gpu_indexes(view: HostView) -> set[int]:
    found = {g.index for g in view.hello.gpus} if view.hello else set()
    return found | ({r.index for r in view.sample.gpus} if view.sample else set())


def address_of(view: HostView) -> str:
    spec = view.spec
    if spec.local:
        return "this computer"
    host = (view.hello.hostname if view.hello else None) or spec.hostname or spec.ssh_alias
    return host or spec.name


SIMULATED_COLOR = "#7b1fa2"
# The GUI thread's time for one pass over a host's tiles, once it has done at least a
# workstation's worth of them. Making 64 tiles takes a second, and updating 64 whose
# texts all change in every sample (a hostile host's scripts and symbols) a few hundred
# ms: what does not fit is done in the next passes, a moment later, with the event loop
# running in between.
# Why a GPU is not free for a new run (None: free) — the core's one rule, given the lab's
# reservations by the cluster view.
BusyRule = Callable[[HostView, GpuReading], str | None]
_POLICY = Policy()


def no_reservations(view: HostView, reading: GpuReading) -> str | None:
    return gpu_busy_reason(view, reading, (), (), _POLICY)


PASS_BUDGET_S = 0.02
PASS_MIN_TILES = 8


class HostGroup(RoundedFrame):
    """Header + tiles of one host; ``update_view`` is called from the display timer."""

    trust_requested = Signal(str)
    changed_key_help_requested = Signal(str)
    reconnect_requested = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(8, QPalette.ColorRole.Window, QPalette.ColorRole.Mid, parent=parent)
        self.name = name
        self._busy: BusyRule = no_reservations
        self.setObjectName("HostGroup")
        self.view: HostView | None = None
        self.tiles: dict[int, GpuTile] = {}
        self._last_sample_seq: int | None = None
        # The view last shown when later ones were only kept (group off screen).
        self._deferred_from: HostView | None = None
        self._history: Callable[[int], GpuHistory] | None = None
        # Tiles still to be shown the latest view: index → (reading, when it arrived if
        # it is a new sample), oldest first.
        self._todo: dict[int, tuple[GpuReading | None, float | None]] = {}
        # A child, so it dies with the group: the next pass over the tiles.
        self._more_tiles = QTimer(self)
        self._more_tiles.setSingleShot(True)
        self._more_tiles.setInterval(5)  # not 0: input and painting get their turn first
        self._more_tiles.timeout.connect(self._on_more_tiles)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 12)
        outer.setSpacing(6)

        self._add_header(outer)
        self._add_details(outer)

        self.body = QWidget()
        self.body.setObjectName("hostBody")
        self.flow = FlowLayout(self.body)
        outer.addWidget(self.body)
        self.placeholder = PlainLabel()
        self.placeholder.setObjectName("placeholder")
        self.placeholder.setWordWrap(True)
        outer.addWidget(self.placeholder)

    def _add_header(self, outer: QVBoxLayout) -> None:
        """Name, address, badges, state and the buttons a state calls for."""
        header = QHBoxLayout()
        header.setSpacing(8)
        self.name_label = PlainLabel(self.name)
        self.name_label.setObjectName("hostName")
        font = QFont(self.name_label.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.name_label.setFont(font)
        self.address_label = PlainLabel()
        self.address_label.setObjectName("address")
        self.simulated_badge = Pill("simulated", outline=True)
        self.simulated_badge.set_color(SIMULATED_COLOR)
        self.simulated_badge.setObjectName("simulatedBadge")
        self.simulated_badge.setToolTip(
            "The GPUs of this host are simulated from recorded readings (demo / test)."
        )
        self.state_label = Pill()
        self.state_label.setObjectName("statePill")
        self.age_label = PlainLabel()
        self.age_label.setObjectName("age")
        self.summary_label = PlainLabel()
        self.summary_label.setObjectName("hostSummary")
        header.addWidget(self.name_label)
        header.addWidget(self.address_label)
        header.addWidget(self.simulated_badge)
        header.addWidget(self.state_label)
        header.addWidget(self.age_label)
        header.addStretch(1)
        header.addWidget(self.summary_label)
        self.trust_button = QPushButton("Trust…")
        self.trust_button.setToolTip("Show the host's key fingerprint and decide")
        self.trust_button.clicked.connect(lambda: self.trust_requested.emit(self.name))
        self.help_button = QPushButton("What to do…")
        self.help_button.clicked.connect(
            lambda: self.changed_key_help_requested.emit(self.name)
        )
        self.reconnect_button = QPushButton("Reconnect")
        self.reconnect_button.clicked.connect(lambda: self.reconnect_requested.emit(self.name))
        for button in (self.trust_button, self.help_button, self.reconnect_button):
            button.setVisible(False)
            header.addWidget(button)
        outer.addLayout(header)

    def _add_details(self, outer: QVBoxLayout) -> None:
        """The state's detail and what Labdeck left out of what the host sent."""
        self.detail_label = PlainLabel()
        self.detail_label.setObjectName("detail")
        self.detail_label.setWordWrap(True)
        self.detail_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.detail_label)
        # What Labdeck left out of what the host sent (HostView.note): host-made numbers
        # in it, so never rich text.
        self.note_label = PlainLabel()
        self.note_label.setObjectName("hostNote")
        self.note_label.setTextFormat(Qt.TextFormat.PlainText)
        self.note_label.setWordWrap(True)
        palette = self.note_label.palette()  # no style sheet: see painted.py
        palette.setColor(QPalette.ColorRole.WindowText, QColor(STATE_COLORS[HostState.STALE]))
        self.note_label.setPalette(palette)
        self.note_label.setVisible(False)
        outer.addWidget(self.note_label)

    # -- updates ---------------------------------------------------------------------
    def only_values_changed(self, view: HostView) -> bool:
        """True when ``view`` differs from the one shown only in GPU readings, so that an
        off-screen group may take it later (``defer_view``) without its layout changing."""
        old = self._deferred_from or self.view
        if old is None:
            return False
        return (view.state is old.state and view.detail == old.detail
                and view.hello == old.hello and view.spec == old.spec
                and _gpu_indexes(view) == _gpu_indexes(old))

    def defer_view(self, view: HostView) -> None:
        """Keep ``view`` for counts without touching the widgets (the group is off
        screen); the next ``update_view`` re-seeds the sparklines from history."""
        if self._deferred_from is None:
            self._deferred_from = self.view
        self.view = view

    def update_view(self, view: HostView, history: Callable[[int], GpuHistory],
                    busy: BusyRule | None = None) -> None:
        if busy is not None:
            self._busy = busy
        reseed = self._deferred_from is not None
        self._deferred_from = None
        self.view = view
        state = view.state
        self.address_label.setText(address_of(view))
        self.simulated_badge.setVisible(view.simulated)
        color = STATE_COLORS.get(state, "#5f6368")
        self.state_label.setText(state.label)
        self.state_label.set_color(color)
        detail = view.detail or DEFAULT_DETAIL.get(state, "")
        if state is HostState.HOSTKEY_CHANGED:
            detail = f"{CHANGED_KEY_WARNING}\n{view.detail}" if view.detail else \
                CHANGED_KEY_WARNING
        self.detail_label.setText(detail)
        self.detail_label.setVisible(bool(detail) and state is not HostState.ONLINE)
        self.detail_label.setStyleSheet(
            f"color: {color};" if state in (HostState.HOSTKEY_CHANGED,
                                            HostState.AUTH_FAILED) else ""
        )
        if view.note != self.note_label.text():
            self.note_label.setText(view.note)
        self.note_label.setVisible(bool(view.note))
        self.trust_button.setVisible(state is HostState.HOSTKEY_UNKNOWN)
        self.help_button.setVisible(state is HostState.HOSTKEY_CHANGED)
        self.reconnect_button.setVisible(state in (
            HostState.OFFLINE, HostState.AUTH_FAILED, HostState.AGENT_FAILED,
            HostState.NEEDS_REBOOT, HostState.STALE,
        ))
        self._in_one_layout(lambda: self._sync_tiles(view, history, reseed))
        # Only live data looks live: every other state greys the tiles.
        self.body.setEnabled(state is HostState.ONLINE)
        self.refresh_age()

    def refresh_age(self, now: float | None = None) -> None:
        """Keep "last data 23 s ago" current; called every display tick."""
        view = self.view
        if view is None or view.state is HostState.ONLINE or view.sample_received_at is None:
            self.age_label.setVisible(False)
            return
        age = (now or time.time()) - view.sample_received_at
        self.age_label.setText(f"last data {format_age(age)} ago")
        self.age_label.setVisible(True)

    def gpu_counts(self) -> tuple[int, int]:
        """(GPUs, free GPUs); a GPU counts as free only while its host is online."""
        view = self.view
        if view is None:
            return (0, 0)
        total = len(_gpu_indexes(view))  # the tiles of a big host may still be on their way
        if view.state is not HostState.ONLINE or view.sample is None:
            return (total, 0)
        return (total, sum(1 for r in view.sample.gpus if self._busy(view, r) is None))

    def _sync_tiles(self, view: HostView, history: Callable[[int], GpuHistory],
                    reseed: bool = False) -> None:
        names: dict[int, str] = {}
        if view.hello is not None:
            names = {g.index: g.name for g in view.hello.gpus}
        readings = {r.index: r for r in view.sample.gpus} if view.sample else {}
        wanted = sorted(set(names) | set(readings))
        for index in [i for i in self.tiles if i not in wanted]:
            tile = self.tiles.pop(index)
            self.flow.removeWidget(tile)
            tile.deleteLater()
        for index in wanted:
            if index in self.tiles:
                if index in names:
                    self.tiles[index].set_name(names[index])
                if reseed:  # samples were skipped while off screen
                    self.tiles[index].reseed(history(index))
        deadline = time.perf_counter() + PASS_BUDGET_S
        missing = [i for i in wanted if i not in self.tiles]
        for done, index in enumerate(missing, 1):
            tile = GpuTile(index, names.get(index, ""))
            tile.seed(history(index))
            self.tiles[index] = tile
            if done >= PASS_MIN_TILES and time.perf_counter() > deadline:
                break
        if missing:
            self._insert_sorted()
        self._history = history
        seq = view.sample.seq if view.sample else None
        received = view.sample_received_at if seq != self._last_sample_seq else None
        self._last_sample_seq = seq
        # Tiles left over from the last view first, so that none waits for ever; a new
        # sample they had not shown yet stays one (its sparkline point is kept).
        todo = {i: self._todo[i] for i in self._todo if i in self.tiles}
        for index in self.tiles:
            earlier = todo.get(index, (None, None))[1]
            todo[index] = (readings.get(index), received or earlier)
        self._todo = todo
        self._update_tiles(deadline)
        if len(self.tiles) < len(wanted):
            self._more_tiles.start()
        self.body.setVisible(bool(self.tiles))
        if not self.tiles:
            if view.hello is not None and not view.hello.gpus:
                text = f"No GPU found on this host ({view.hello.backend_detail or 'no driver'})."
            elif view.state is HostState.CONNECTING:
                text = "Waiting for the first reading…"
            else:
                text = "No GPU data."
            self.placeholder.setText(text)
        self.placeholder.setVisible(not self.tiles)

    def _update_tiles(self, deadline: float) -> None:
        """Show the tiles their readings, oldest first, until ``deadline``."""
        done = 0
        while self._todo:
            index = next(iter(self._todo))
            reading, received = self._todo.pop(index)
            tile = self.tiles.get(index)
            if tile is not None:
                view = self.view
                busy = self._busy(view, reading) if view is not None and reading else None
                tile.update_reading(reading, received, busy)
            done += 1
            if done >= PASS_MIN_TILES and time.perf_counter() > deadline:
                break
        if self._todo:
            self._more_tiles.start()

    def _on_more_tiles(self) -> None:
        view, history = self.view, self._history
        if view is None or history is None:
            return
        if self._todo and len(self.tiles) >= len(_gpu_indexes(view)):
            self._in_one_layout(
                lambda: self._update_tiles(time.perf_counter() + PASS_BUDGET_S))
        else:
            self.update_view(view, history)

    def _in_one_layout(self, change: Callable[[], None]) -> None:
        # Tiles show and hide their rows one by one: lay the tiles out once at the end,
        # not after each row (every time is a pass over all tiles: quadratic in them).
        self.flow.setEnabled(False)
        try:
            change()
        finally:
            self.flow.setEnabled(True)
            self.flow.invalidate()
            # Lay out now: a layout request that came while disabled was dropped, and
            # QLayout.update() posts no new one for a layout that is not activated, so
            # without this the tiles could stay stacked at (0, 0).
            self.flow.activate()

    def _insert_sorted(self) -> None:
        # FlowLayout keeps insertion order: rebuild it so GPU 0 always comes first.
        for t in self.tiles.values():
            self.flow.removeWidget(t)
        for index in sorted(self.tiles):
            self.flow.addWidget(self.tiles[index])
        for tile in self.tiles.values():
            if tile.parent() is not self.body:
                tile.setParent(self.body)
                tile.show()
