"""The sizes and durations of a suite (the full one, and `--quick` to check the harness), and
what a suite records: each variant, and the outcome of each scenario against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and durations of one suite."""

    fanout_sizes: tuple[int, ...]
    redis_fanout_sizes: tuple[int, ...]
    rounds: int
    idle_waiters: int
    idle_warmup: int
    idle_hold_s: float
    connections: int
    lead_s: float  # publish, catch-up: from the start to the first request
    warmup_s: float
    duration_s: float
    catchup_events: int
    stream_subscribers: int
    redis_stream_subscribers: int  # Redis shares the server core: a full stream swamps it
    stream_rate: float
    stream_duration_s: float
    overload_rate: float  # stream-overload: the stream's subscribers at this rate
    overload_duration_s: float
    persist_rounds: int
    settle_s: float  # wait for subscribers where the server cannot count them (redis-2, --other)


FULL = Plan(
    fanout_sizes=(1000, 5000, 10000),
    redis_fanout_sizes=(1000, 5000),
    rounds=3,
    idle_waiters=10_000,
    idle_warmup=100,
    idle_hold_s=1.0,
    connections=50,
    lead_s=1.5,
    warmup_s=1.0,
    duration_s=3.0,
    catchup_events=100,
    stream_subscribers=1000,
    redis_stream_subscribers=200,
    stream_rate=20.0,
    stream_duration_s=10.0,
    overload_rate=200.0,
    overload_duration_s=5.0,
    persist_rounds=2,
    settle_s=2.0,
)

QUICK = Plan(
    fanout_sizes=(50, 100),
    redis_fanout_sizes=(50, 100),
    rounds=1,
    idle_waiters=100,
    idle_warmup=10,
    idle_hold_s=0.2,
    connections=10,
    lead_s=0.4,
    warmup_s=0.1,
    duration_s=0.5,
    catchup_events=20,
    stream_subscribers=20,
    redis_stream_subscribers=20,
    stream_rate=20.0,
    stream_duration_s=1.0,
    overload_rate=200.0,
    overload_duration_s=0.5,
    persist_rounds=1,
    settle_s=0.5,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario against one variant: its results (as in results.json), or its error."""

    label: str
    scenario: str
    payload: dict[str, Any]
    failed: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class Variant:
    """A server set-up: its label, how it was started, which scenarios ran against it."""

    label: str
    server: str
    scenarios: tuple[str, ...]
