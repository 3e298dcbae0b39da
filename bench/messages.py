"""Messages between the coordinator and its subscriber worker processes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Hold `count` connections and send one subscribe request on each."""

    count: int


@dataclass(frozen=True, slots=True)
class Collect:
    """The event was published at `t0_ns`: wait for the responses, then report."""

    t0_ns: int
    timeout_s: float
    marker: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close every connection."""


@dataclass(frozen=True, slots=True)
class Exit:
    """Close everything and exit."""


Command = Subscribe | Collect | Close | Exit


@dataclass(frozen=True, slots=True)
class Hello:
    """A worker started; `fd_note` is non-empty when its descriptor limit is short."""

    index: int
    fd_soft: int
    fd_note: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """All requests were written; `errors` counts connections that failed to open."""

    sent: int
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Collected:
    """Latencies (ns after t0) of good responses, error counts, CPU in the window.

    `reads` counts the socket reads that carried those good responses.
    """

    latencies_ns: list[int]
    errors: dict[str, int]
    cpu_s: float
    last_ns: int
    reads: int


@dataclass(frozen=True, slots=True)
class Closed:
    """Every connection is closed."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker hit an unexpected error and is exiting."""

    index: int
    error: str


Reply = Hello | Subscribed | Collected | Closed | Failed
