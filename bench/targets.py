"""The project's performance targets, checked against one variant's results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Check:
    """A target against a figure: `met` is None when the figure was not measured."""

    figure: str
    met: bool | None

    @property
    def verdict(self) -> str:
        """'met', 'missed' or 'not measured'."""
        return {True: "met", False: "missed", None: "not measured"}[self.met]


@dataclass(frozen=True, slots=True)
class Target:
    """What is promised, the scenario that measures it, and how to read its result."""

    name: str
    scenario: str
    check: Callable[[Body], Check]


FANOUT_N = 10_000
FANOUT_MS = 258.0
CATCHUP_RPS = 25_000.0
PUBLISH_RPS = 40_000.0
IDLE_KIB = 12.0
STREAM_P99_MS = 39.0


def _fanout(body: Body) -> Check:
    size = next((s for s in body.get("sizes", []) if s.get("size") == FANOUT_N), None)
    if size is None or size.get("max_ms") is None:
        return Check("-", None)
    complete = size["received"] == size["expected"]
    figure = f"{size['max_ms']:,.0f} ms" + ("" if complete else " (events missed)")
    return Check(figure, complete and size["max_ms"] <= FANOUT_MS)


def _rate(load: Body, floor: float) -> Check:
    rate = load.get("requests_per_s")
    if not isinstance(rate, int | float):
        return Check("-", None)
    ok = not load.get("errors") and load.get("connected") == load.get("connections")
    return Check(f"{rate:,.0f} req/s" + ("" if ok else " (with errors)"), ok and rate >= floor)


def _idle(body: Body) -> Check:
    per = body.get("kib_per_waiter")
    if not isinstance(per, int | float):
        return Check("-", None)
    return Check(f"{per:.1f} KiB at {body.get('sent', 0):,} waiting", per <= IDLE_KIB)


def _stream(body: Body) -> Check:
    p99 = (body.get("latency") or {}).get("p99_ms")
    if not isinstance(p99, int | float):
        return Check("-", None)
    missed, dups = body.get("missed", 0), body.get("duplicated", 0)
    exact = missed == 0 and dups == 0 and body.get("out_of_order", 0) == 0
    figure = f"p99 {p99:.1f} ms, {missed} missed, {dups} duplicated"
    return Check(figure, exact and p99 <= STREAM_P99_MS)


TARGETS = [
    Target(
        f"fan-out to {FANOUT_N:,} waiting subscribers (publish to the last response, "
        f"slowest round) <= {FANOUT_MS:.0f} ms",
        "fanout",
        _fanout,
    ),
    Target(
        f"catch-up >= {CATCHUP_RPS:,.0f} req/s",
        "catchup",
        lambda body: _rate(body.get("load", {}), CATCHUP_RPS),
    ),
    Target(
        f"publish >= {PUBLISH_RPS:,.0f} req/s", "publish", lambda body: _rate(body, PUBLISH_RPS)
    ),
    Target(f"idle memory <= {IDLE_KIB:.0f} KiB per waiting subscriber", "idle-memory", _idle),
    Target(
        f"stream p99 <= {STREAM_P99_MS:.0f} ms with 0 missed and 0 duplicated", "stream", _stream
    ),
]


def check(target: Target, bodies: dict[str, Body]) -> Check:
    """`target` against the results of one variant, by scenario."""
    body = bodies.get(target.scenario)
    return Check("-", None) if body is None else target.check(body)
