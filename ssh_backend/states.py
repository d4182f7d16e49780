"""The states a host connection can be in, as the user sees them."""

from __future__ import annotations

import enum


class HostState(enum.StrEnum):
    """Connection state of one host, from "not started" to "serving samples"."""

    CONNECTING = "connecting"
    ONLINE = "online"
    # Connected, but no sample arrived for a few intervals: values shown are old.
    STALE = "stale"
    # Not reachable (refused, timed out, heartbeat lost); a reconnect is scheduled.
    OFFLINE = "offline"
    AUTH_FAILED = "auth_failed"
    HOSTKEY_UNKNOWN = "hostkey_unknown"
    HOSTKEY_CHANGED = "hostkey_changed"
    # The GPU driver and the NVML library disagree (after a driver update): reboot needed.
    NEEDS_REBOOT = "needs_reboot"
    # Connected, but the agent cannot run there (no python3, too old, crashed).
    AGENT_FAILED = "agent_failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        """States that a reconnect loop does not leave by itself: the user must act."""
        return self in {
            HostState.AUTH_FAILED,
            HostState.HOSTKEY_UNKNOWN,
            HostState.HOSTKEY_CHANGED,
            HostState.STOPPED,
        }

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    HostState.CONNECTING: "connecting…",
    HostState.ONLINE: "online",
    HostState.STALE: "stale",
    HostState.OFFLINE: "offline",
    HostState.AUTH_FAILED: "authentication failed",
    HostState.HOSTKEY_UNKNOWN: "host key unknown",
    HostState.HOSTKEY_CHANGED: "host key CHANGED",
    HostState.NEEDS_REBOOT: "needs reboot (driver mismatch)",
    HostState.AGENT_FAILED: "agent failed",
    HostState.STOPPED: "stopped",
}
