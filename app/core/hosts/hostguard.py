"""What the monitor lets one host show, and the plain-text note of what it left out.

The per-message bounds are applied while decoding (``ssh_backend.limits``); this keeps the
bounds that span messages, per host and agent connection: one hello per connection (a
host that says hello again and again would rebuild its GPU tiles every time), at most
``MAX_GPUS`` GPUs shown counting the ones samples add to the hello's (the first ones
seen stay: a host numbering its GPUs anew in every sample changes nothing on screen),
and tail chunks only for runs placed on the host, said once on the host and in the log
at most every ``FOREIGN_LOG_S``. Not thread-safe: the monitor calls it under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ssh_backend.limits import MAX_GPUS
from ssh_backend.protocol import Hello, Sample

# A host that sends data for runs it does not hold is logged at most this often.
FOREIGN_LOG_S = 60.0
FOREIGN_NOTE = ("sent data for runs that Labdeck did not place on this host; "
                "it was ignored (see the log)")
REPEATED_HELLO_NOTE = "said hello again on the same connection; ignored"


@dataclass(frozen=True, slots=True)
class ForeignReport:
    """What to say about foreign chunks now: a log line's figures and whether the note
    is new (the host's view changes)."""

    chunks: int
    runs: tuple[str, ...]
    note_added: bool


@dataclass(slots=True)
class HostGuard:
    """The bounds above for one host; ``note`` says what was left out ('' if nothing)."""

    hello_seen: bool = False
    # GPU indexes shown on this connection: the hello's, then the first others sampled.
    gpus: set[int] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)  # where from → sentence
    foreign_chunks: int = 0
    foreign_runs: set[str] = field(default_factory=set)  # a few ids, clipped, for the log
    foreign_logged_at: float | None = None

    @property
    def note(self) -> str:
        return "; ".join(text for text in self.notes.values() if text)

    def connection_ended(self) -> None:
        """The agent connection is gone: the next one starts with a hello of its own."""
        self.hello_seen = False
        self.gpus = set()

    def hello(self, hello: Hello) -> bool:
        """Whether to show ``hello`` (False: a repeat on the same connection)."""
        if self.hello_seen:
            self.notes["repeat"] = REPEATED_HELLO_NOTE
            return False
        self.hello_seen = True
        self.gpus = {gpu.index for gpu in hello.gpus}
        self.notes["hello"] = hello.cut
        return True

    def sample(self, sample: Sample) -> Sample:
        """``sample`` with the readings of GPUs beyond those shown left out."""
        kept = []
        for reading in sample.gpus:
            if reading.index not in self.gpus:
                if len(self.gpus) >= MAX_GPUS:
                    continue
                self.gpus.add(reading.index)
            kept.append(reading)
        cut = sample.cut
        if len(kept) < len(sample.gpus):
            extra = (f"host sent readings of {len(sample.gpus) - len(kept)} GPUs beyond the "
                     f"{MAX_GPUS} shown; left out")
            cut = "; ".join(part for part in (cut, extra) if part)
            sample = replace(sample, gpus=tuple(kept), cut=cut)
        self.notes["sample"] = cut
        return sample

    def foreign(self, run_id: str, now: float) -> ForeignReport | None:
        """A chunk of a run not placed on this host arrived at monotonic time ``now``:
        what to say, or None while the last log line is recent."""
        self.foreign_chunks += 1
        if len(self.foreign_runs) < 5:
            self.foreign_runs.add(run_id[:64])
        first = self.foreign_logged_at is None
        if not first and now - (self.foreign_logged_at or 0.0) < FOREIGN_LOG_S:
            return None
        report = ForeignReport(self.foreign_chunks, tuple(sorted(self.foreign_runs)), first)
        self.foreign_chunks, self.foreign_runs, self.foreign_logged_at = 0, set(), now
        if first:
            self.notes["runs"] = FOREIGN_NOTE
        return report
