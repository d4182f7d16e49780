"""What Labdeck knows about one host before connecting: how to reach it, how to sample it."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.1  # 10 Hz is the fastest sampling the agent accepts


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """How the agent on the host should sample."""

    interval_s: float = DEFAULT_INTERVAL_S
    # "auto" tries NVML, then nvidia-smi, then reports no GPU. "sim" replays recordings.
    backend: str = "auto"
    sim_gpus: int = 0
    # Where the agent finds nvidia-smi when it falls back to it (None: search PATH).
    nvidia_smi: str | None = None

    def argv(self, sim_host_id: str | None = None) -> list[str]:
        """Arguments after ``agent.py``: plain tokens, quoted by the caller.

        ``sim_host_id`` names the simulated host: its GPU UUIDs derive from it, so several
        simulated hosts on one machine never share a GPU identity (or a GPU lease).
        """
        args = ["--interval", f"{self.interval_s:g}", "--backend", self.backend]
        if self.backend == "sim":
            args += ["--sim-gpus", str(self.sim_gpus)]
            if sim_host_id:
                args += ["--sim-host-id", sim_host_id]
        if self.nvidia_smi:
            args += ["--nvidia-smi", self.nvidia_smi]
        return args


@dataclass(frozen=True, slots=True)
class HostSpec:
    """A host as stored by Labdeck.

    ``ssh_alias`` names a ``Host`` block of ~/.ssh/config, resolved at every connect so
    edits to the config apply; explicit fields override what the config says.
    """

    name: str
    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    key_filename: str | None = None
    ssh_alias: str | None = None
    # ``user@host[:port]`` hops, first hop first; overrides ProxyJump from the config.
    proxy_jump: tuple[str, ...] = ()
    local: bool = False
    agent: AgentOptions = field(default_factory=AgentOptions)

    def agent_argv(self) -> list[str]:
        return self.agent.argv(sim_host_id=self.name)

    @property
    def simulated(self) -> bool:
        return self.agent.backend == "sim"
