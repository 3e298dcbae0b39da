"""Judging a suite's figures: the targets (`serve`'s figure over `asgi-uvicorn`'s from the
same run, or fixed bounds for idle memory and the stream; `PARITY`: `serve-tokens` against
`serve`), and `serve` against the other servers figure by figure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from bench.report import problems

Body = dict[str, Any]
Bodies = dict[tuple[str, str], Body]  # the results of a run, by (variant, scenario)

SUBJECT, BASELINE, TOKENS = "serve", "asgi-uvicorn", "serve-tokens"
STOCK = (BASELINE, "granian")
VERDICTS = {True: "met", False: "missed", None: "not measured"}
ON_SCHEDULE = 0.99  # share of the requested rate the publisher must achieve
STREAM_CPU = 0.5  # share of its core the server may use for the stream
SSE_P99_MS = 50.0  # SSE at 1,000 x 200/s: the most its p99 may be
SSE_COST = 1 / 3  # SSE's server CPU per delivery over long polling's, at most
WITHIN = 0.1  # how much worse than `serve` `serve-tokens`' figures may be


@dataclass(frozen=True, slots=True)
class Figure:
    """A variant's figure for a target: the value judged, as shown, what spoils it whatever
    the value (a miss, an error), and `case`, its line in `limits_of`."""

    value: float
    text: str
    problems: tuple[str, ...] = ()
    case: str = ""

    @property
    def shown(self) -> str:
        """The text with its problems."""
        return "; ".join((self.text, *self.problems))


class Check(NamedTuple):
    """A target against one run: `met` is None when a figure it needs was not measured."""

    subject: Figure | None
    baseline: Figure | None
    ratio: float | None  # subject / baseline
    met: bool | None


@dataclass(frozen=True, slots=True)
class Target:
    """What is promised: `bound` is a factor of the baseline's figure, or with `absolute`
    the most (or least) the subject's figure itself may be. With `against`, the baseline
    is the subject's own figure in that scenario; `also` names scenarios whose figures the
    page shows beside the subject's and that baseline."""

    name: str
    figure: str  # the figure's short name
    scenario: str
    read: Callable[[Body], Figure | None]
    bound: float
    more_is_better: bool
    absolute: bool = False
    against: str = ""
    also: tuple[str, str] = ("", "")

    def seen(self, bodies: Bodies, label: str, scenario: str = "") -> Figure | None:
        """`label`'s figure (in `scenario`, default its own), or None when it gave none."""
        body = bodies.get((label, scenario or self.scenario))
        return self.read(body) if body else None

    def check(self, bodies: Bodies, subject: str = SUBJECT, baseline: str = BASELINE) -> Check:
        """This target against one run, as `subject`'s figure over `baseline`'s (or over its
        own in `against`)."""
        mine = self.seen(bodies, subject)
        theirs = self.seen(bodies, *((subject, self.against) if self.against else (baseline,)))
        times = ratio(mine, theirs)
        if mine is None or (times is None and not self.absolute):
            return Check(mine, theirs, times, None)
        value = mine.value if self.absolute else times or 0.0
        good = value >= self.bound if self.more_is_better else value <= self.bound
        return Check(mine, theirs, times, good and not mine.problems)


def ratio(subject: Figure | None, other: Figure | None) -> float | None:
    """`subject`'s value over `other`'s, when both were measured."""
    if subject is None or other is None or other.value <= 0:
        return None
    return subject.value / other.value


def _figure(
    value: object, text: str, errors: object, spoilt: list[tuple[str, bool]], case: str = ""
) -> Figure | None:
    """A figure of `value` (None if it is not a number), spoilt by `errors` and each text of
    `spoilt` whose condition holds."""
    if not isinstance(value, int | float):
        return None
    return Figure(value, text, tuple(problems(errors, *(t for t, holds in spoilt if holds))), case)


def _fanout(body: Body) -> Figure | None:
    size = max(body.get("sizes", []), key=lambda s: int(s["size"]), default=None)
    if size is None or size.get("max_ms") is None:
        return None
    got, want, n = size["received"], size["expected"], f"N={size['size']:,}"
    text, spoilt = f"{size['max_ms']:,.1f} ms at {n}", [(f"got {got}/{want}", got != want)]
    return _figure(size["max_ms"], text, size.get("errors"), spoilt, n)


def _rate(load: Body) -> Figure | None:
    rate, short = load.get("requests_per_s"), load.get("connected") != load.get("connections")
    text = f"{rate:,.0f} req/s" if isinstance(rate, int | float) else ""
    return _figure(rate, text, load.get("errors"), [("not all connected", short)])


def _idle(body: Body) -> Figure | None:
    per, sent = body.get("kib_per_waiter"), body.get("sent", 0)
    text = f"{per:.1f} KiB at {sent:,} waiting" if isinstance(per, int | float) else ""
    return _figure(
        per, text, body.get("errors"), [("not all waiting", sent < body.get("waiters", 0))]
    )


def _exact(body: Body) -> tuple[str, list[tuple[str, bool]], float | None]:
    """A stream's missed and duplicated events, as shown; what spoils its figures (events
    missed, duplicated or out of order); and its p99 (None if not measured)."""
    missed, dups, disorder = (body.get(k, 0) for k in ("missed", "duplicated", "out_of_order"))
    spoilt = [("events missed or duplicated", bool(missed or dups))]
    spoilt.append((f"{disorder} out of order", disorder != 0))
    cut = body.get("cut_off", 0)
    spoilt.append((f"{cut} events not read when the publisher gave up", cut != 0))
    p99 = (body.get("latency") or {}).get("p99_ms")
    return (
        f"{missed} missed, {dups} duplicated",
        spoilt,
        p99 if isinstance(p99, int | float) else None,
    )


def _stream(body: Body, with_cpu: bool = True) -> Figure | None:
    """p99, with the publisher on schedule and every event delivered once (`with_cpu`: and
    the server's CPU within its bound)."""
    (exact, spoilt, p99), cpu = _exact(body), body.get("server_cpu_share")
    if p99 is None:
        return None
    rate, achieved = body["rate"], body["published"] / max(1e-9, body["publishing_s"])
    late = body.get("publish_failed", 0) > 0 or achieved < ON_SCHEDULE * rate
    spoilt.append((f"published {achieved:.1f} of {rate:g} events/s", late))
    if not with_cpu:
        return _figure(p99, f"p99 {p99:.1f} ms, {exact}", body.get("errors"), spoilt)
    spoilt.append(("server CPU not measured", cpu is None))
    spoilt.append((f"server CPU above {STREAM_CPU:.0%}", cpu is not None and cpu > STREAM_CPU))
    shown = "-" if cpu is None else f"{cpu:.0%}"
    text = f"p99 {p99:.1f} ms, {exact}, server CPU {shown}, {achieved:.1f} events/s published"
    return _figure(p99, text, body.get("errors"), spoilt)


def _overload(body: Body, by_p99: bool = False) -> Figure | None:
    """Deliveries per second, every event delivered once (`by_p99`: the figure is the p99,
    and the deliveries/s must reach 99% of those asked for)."""
    (exact, spoilt, p99), per_s = _exact(body), body.get("delivered_per_s")
    if not isinstance(per_s, int | float) or p99 is None:
        return None
    text = f"{per_s:,.0f} deliveries/s, p99 {p99:,.1f} ms, {exact}"
    if not by_p99:
        return _figure(per_s, text, body.get("errors"), spoilt)
    want, cpu = body["subscribers"] * body["rate"], body.get("server_cpu_share")
    spoilt.append((f"{per_s / want:.1%} of {want:,.0f} deliveries/s", per_s < ON_SCHEDULE * want))
    text += "" if cpu is None else f", server CPU {cpu:.0%}"
    return _figure(p99, text, body.get("errors"), spoilt)


def _per_delivery(body: Body) -> Figure | None:
    """The server's CPU per delivery, every event delivered once."""
    (exact, spoilt, _), us = _exact(body), body.get("server_us_per_delivery")
    if not isinstance(us, int | float):
        return None
    case = f"{body['subscribers']:,} x {body['rate']:g}/s"
    return _figure(us, f"{us:.1f} us at {case}, {exact}", body.get("errors"), spoilt)


def _server_cpu(body: Body) -> Figure | None:
    cpu = body.get("server_cpu_share")
    return _figure(cpu, f"server CPU {cpu:.0%}" if isinstance(cpu, int | float) else "", {}, [])


TARGETS = [
    Target(
        "stream 1,000 x 20/s: every event published on schedule, 0 missed, 0 duplicated, "
        f"p99 <= 40 ms, server CPU <= {STREAM_CPU:.0%} of its core",
        "stream p99 ms",
        "stream",
        _stream,
        40.0,
        more_is_better=False,
        absolute=True,
    ),
    Target(
        "stream overload 1,000 x 200/s: deliveries/s >= 4x asgi-uvicorn, 0 missed",
        "overload deliveries/s",
        "stream-overload",
        _overload,
        4.0,
        more_is_better=True,
    ),
    Target(
        "SSE stream 1,000 x 200/s: every event delivered once (0 missed, 0 duplicated, "
        f"deliveries/s >= {ON_SCHEDULE:.0%} of 200,000), p99 <= {SSE_P99_MS:g} ms",
        "SSE p99 ms",
        "stream-sse-overload",
        lambda body: _overload(body, by_p99=True),
        SSE_P99_MS,
        more_is_better=False,
        absolute=True,
    ),
    Target(
        "SSE server CPU per delivery at 1,000 x 200/s <= 1/3 of long polling's at 1,000 x "
        "20/s (one event per answer), both on serve in the same run",
        "SSE server us/delivery",
        "stream-sse-overload",
        _per_delivery,
        SSE_COST,
        more_is_better=False,
        against="stream",
        also=("stream-sse", "stream-overload"),
    ),
    Target("publish req/s >= 2.5x asgi-uvicorn", "publish req/s", "publish", _rate, 2.5, True),
    Target(
        "fan-out to 10,000: last delivery (slowest round) <= 0.5x asgi-uvicorn",
        "fan-out last delivery ms",
        "fanout",
        _fanout,
        0.5,
        more_is_better=False,
    ),
    Target(
        "idle memory <= 8 KiB per waiting subscriber",
        "idle KiB per waiter",
        "idle-memory",
        _idle,
        8.0,
        more_is_better=False,
        absolute=True,
    ),
    Target(
        "catch-up req/s >= 1.5x asgi-uvicorn",
        "catch-up req/s",
        "catchup",
        lambda body: _rate(body.get("load", {})),
        1.5,
        more_is_better=True,
    ),
]


@dataclass(frozen=True, slots=True)
class Parity:
    """A promise that `subject`'s figures stay close to `baseline`'s in the same run: each
    of `parts` (a target judged on `subject`'s figure over `baseline`'s) is met."""

    name: str
    subject: str
    baseline: str
    parts: tuple[Target, ...]

    def judge(self, bodies: Bodies) -> tuple[list[Check], bool | None]:
        """Each part against one run, and whether all were met (None: one was not measured)."""
        checks = [part.check(bodies, self.subject, self.baseline) for part in self.parts]
        verdicts = [part.met for part in checks]
        return checks, None if None in verdicts else all(verdicts)


PARITY = [
    Parity(
        f"with tokens and metrics on, publish and stream figures within {WITHIN:.0%} of "
        f"{SUBJECT} in the same run: {TOKENS} publish req/s >= {1 - WITHIN:g}x {SUBJECT}'s, "
        f"stream p99 and server CPU <= {1 + WITHIN:g}x, 0 missed, 0 duplicated",
        TOKENS,
        SUBJECT,
        (
            Target("publish req/s", "publish req/s", "publish", _rate, 1 - WITHIN, True),
            Target(
                "stream p99",
                "stream p99",
                "stream",
                lambda body: _stream(body, with_cpu=False),
                1 + WITHIN,
                False,
            ),
            Target(
                "stream server CPU", "stream server CPU", "stream", _server_cpu, 1 + WITHIN, False
            ),
        ),
    )
]


def times(value: float | None) -> str:
    """A ratio as shown (two decimals, or two significant digits below 0.1), or "-"."""
    if value is None:
        return "-"
    return f"{value:.2g}x" if value < 0.1 else f"{value:.2f}x"


def versus(bodies: Bodies, given: tuple[str, ...]) -> list[str]:
    """The page's first section: a column per server, then `serve`'s figure over each
    one's; `given`: the labels of the servers given with `--other`."""
    others = (*STOCK, *given)
    lines = [
        f"| figure | {SUBJECT} | {' | '.join(others)} | "
        + " | ".join(f"{SUBJECT} / {other}" for other in others)
        + " |",
        "| --- |" + " ---: |" * (1 + 2 * len(others)),
    ]
    better, compared = dict.fromkeys(others, 0), dict.fromkeys(others, 0)
    for target in TARGETS:
        mine = target.seen(bodies, SUBJECT)
        seen = {other: target.seen(bodies, other) for other in others}
        ratios = {other: ratio(mine, seen[other]) for other in others}
        for other, value in ratios.items():
            if value is not None:
                compared[other] += 1
                better[other] += value != 1.0 and (value > 1.0) == target.more_is_better
        shown = [
            "-" if f is None else f"{f.value:,.0f}" if f.value >= 100 else f"{f.value:.1f}"
            for f in (mine, *seen.values())
        ]
        lines.append(f"| {target.figure} | {' | '.join(shown)} | ")
        lines[-1] += " | ".join(map(times, ratios.values())) + " |"
    counted = [f"{o} on {better[o]} of {compared[o]} figures" for o in others if compared[o]]
    also = ", ".join(f"`{label}`" for label in given)
    return [
        f"`{SUBJECT}` (`longpoll serve`) against `LongpollApp` (`bench/apps.py`: memory "
        "backend, default options, the garbage-collector settings of `longpoll serve`) "
        f"mounted on stock uvicorn (`{BASELINE}`) and on granian's ASGI interface "
        "(`granian`)"
        + (
            f", and against other implementations of the protocol, given with `--other`: "
            f"{also}. The suite did not start, stop or pin those: each was measured as found, "
            "on whatever cores it may use and after whatever it had served (see Variants)"
            if given
            else ""
        )
        + ". The servers ran side by side, idle while another was measured, scenario by "
        "scenario, so that each row was measured close together in time. "
        + (
            f"In this run `{SUBJECT}` did better than " + " and than ".join(counted) + ":"
            if counted
            else "In this run no figure could be compared:"
        ),
        "",
        *lines,
    ]
