"""The colour of each run state, the same in the runs table and a run window's header."""

from __future__ import annotations

from app.core.queue.runs import RunState

STATE_COLORS = {
    RunState.QUEUED: "#5f6368", RunState.LAUNCHING: "#1565c0", RunState.RUNNING: "#2e7d32",
    RunState.SUCCEEDED: "#1b5e20", RunState.FAILED: "#c62828",
    RunState.CANCELLED: "#6d4c41", RunState.LOST: "#6a1b9a",
}
