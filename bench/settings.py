"""What each scenario does, one dataclass per scenario: `python -m bench SCENARIO` makes
its options of the fields (`--poll-timeout` for `poll_timeout`), and the suite fills
them from its plan. Where the server is, is an `http.Server`."""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.procs import parse_cores


def option(default: Any, help: str, type: Any = None, **more: Any) -> Any:
    """A field that is also a command-line option (`type` parses it; default: the
    default's type)."""
    return field(default=default, metadata={"help": help, "type": type, **more})


def sizes(text: str) -> tuple[int, ...]:
    """Parse '1000,5000' into positive sizes."""
    parsed = tuple(int(part) for part in text.split(",") if part.strip())
    if not parsed or min(parsed) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 1000,5000")
    return parsed


def fresh_category() -> str:
    """A category no earlier run used."""
    return f"bench-{uuid.uuid4().hex[:8]}"


@dataclass(kw_only=True)
class Scenario:
    """What every scenario takes; `where` lists the options saying where the server is that
    its command takes beyond --url, --publish-path and --server-pid (`none`: not even those)."""

    where: ClassVar[str] = ""
    max_seconds: ClassVar[float] = 600.0

    @property
    def processes(self) -> int:
        """How many generator processes."""
        return 1

    pin: tuple[int, ...] | None = option(
        None,
        "pin the generator processes and the coordinator to these cores, e.g. 1 or 1,2",
        parse_cores,
    )
    payload_bytes: int = option(0, "padding added to each event's data")


@dataclass(kw_only=True)
class Subscribing(Scenario):
    """Scenarios whose subscribers each hold one keep-alive connection."""

    category: str = option("", "category to use (default: a fresh random one)")
    procs: int = option(0, "generator processes (default: one per --pin core, else 2)")
    poll_timeout: int = option(100, "subscribe timeout= seconds")
    settle: float = option(3.0, "seconds to wait for the subscribers without stats")
    settle_timeout: float = option(60.0, "max seconds to poll stats")
    connect_concurrency: int = option(256, "connects in flight per process")
    connect_timeout: float = option(10.0, "seconds per connect attempt")

    def __post_init__(self) -> None:
        self.category = self.category or fresh_category()
        self.procs = self.procs or (len(self.pin) if self.pin else 2)
        if self.procs < 1 or self.poll_timeout < 1:
            raise ValueError("--procs and --poll-timeout must be at least 1")

    @property
    def processes(self) -> int:
        """How many generator processes."""
        return self.procs


@dataclass(kw_only=True)
class Waiting(Subscribing):
    """Subscribers that wait for one publish."""

    collect_timeout: float = option(30.0, "max seconds to wait for deliveries")


@dataclass(kw_only=True)
class Fanout(Waiting):
    """N subscribers wait on one category; one publish; the time to each delivery."""

    where = "events stats"
    max_seconds = 1800.0

    sizes: tuple[int, ...] = option((1000, 5000, 10000), "N values, e.g. 1000,5000", sizes)
    rounds: int = option(3, "rounds per N")


@dataclass(kw_only=True)
class IdleMemory(Waiting):
    """The server's memory before, while and after N subscribers wait."""

    where = "events stats"
    max_seconds = 1800.0

    waiters: int = option(10_000, "waiting subscribers")
    warmup: int = option(100, "warm-up round size (0: none)")
    hold: float = option(1.0, "seconds to hold before reading the memory")


@dataclass(kw_only=True)
class Stream(Subscribing):
    """K subscribers in resume loops while R events/s are published for T s."""

    where = "events stats start"

    subscribers: int = option(1000, "K subscribers, one connection each")
    rate: float = option(20.0, "R events published per second")
    duration: float = option(10.0, "T seconds of publishing")
    max_events: int = option(100_000, "events published at most")
    poll_timeout: int = option(30, "subscribe timeout= seconds")
    settle: float = option(0.5, "seconds to wait for the subscribers without stats")
    settle_timeout: float = option(30.0, "max seconds to poll stats")
    drain: float = option(10.0, "max seconds after publishing for the tail")

    @property
    def processes(self) -> int:
        """How many generator processes (no more than subscribers)."""
        return min(self.procs, self.subscribers)


@dataclass(kw_only=True)
class StreamSSE(Stream):
    """K subscribers each reading a stream of server-sent events while R events/s are
    published for T s, open loop."""

    poll_timeout: int = field(default=30, metadata={"cli": False})  # a stream has none
    latency_every: int = option(10, "every Nth subscriber parses its events' send times")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latency_every < 1:
            raise ValueError("--latency-every must be at least 1")


@dataclass(kw_only=True)
class Load(Scenario):
    """A closed loop: C keep-alive connections, each sending its next request as soon as
    the last is answered; answers counted over `duration` s after `warmup` s."""

    category: str = option("", "category to use (default: a fresh random one)")
    connections: int = option(50, "concurrent connections (keep-alive)")
    procs: int = option(1, "generator processes")
    warmup: float = option(1.0, "seconds of requests before measuring")
    duration: float = option(5.0, "seconds measured")
    max_requests: int = option(2_000_000, "requests at most, in total")
    lead: float = field(default=1.5, metadata={"cli": False})  # to the first request

    def __post_init__(self) -> None:
        self.category = self.category or fresh_category()

    @property
    def processes(self) -> int:
        """How many generator processes (no more than connections)."""
        return min(self.procs, self.connections)


@dataclass(kw_only=True)
class Publish(Load):
    """Publish requests per second."""


@dataclass(kw_only=True)
class Catchup(Publish):
    """Subscribe requests answered at once from the buffer, per second."""

    where = "events start"

    events: int = option(100, "events published first")
    since: str = option("all", "since_time=-1, or after event 1", choices=("all", "first"))
    poll_timeout: int = option(5, "subscribe timeout= seconds")


@dataclass(kw_only=True)
class PublishPersist(Load):
    """Publish requests per second of fresh `longpoll serve`s: persistence off, on, fsync."""

    where = "none"

    category: str = field(default="", metadata={"cli": False})  # one per variant
    server_core: int = option(0, "core for the servers")
    rounds: int = option(2, "runs per variant")
    dir: Path | None = option(None, "directory for the data files", Path)  # noqa: RUF009
    flush_period: float | None = option(None, "--flush-period for the server", float)


SCENARIOS: dict[str, type[Scenario]] = {
    "fanout": Fanout,
    "idle-memory": IdleMemory,
    "publish": Publish,
    "publish-persist": PublishPersist,
    "catchup": Catchup,
    "stream": Stream,
    "stream-sse": StreamSSE,
}
