"""The project's performance targets: `serve` (`longpoll serve`) against `asgi-uvicorn`
(`LongpollApp` on stock uvicorn), both measured in the same run, as a ratio of the two
figures; idle memory and the stream's latency and CPU against fixed bounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]
Bodies = dict[tuple[str, str], Body]  # the results of a run, by (variant, scenario)

SUBJECT = "serve"
BASELINE = "asgi-uvicorn"


@dataclass(frozen=True, slots=True)
class Figure:
    """A variant's figure for a target: the value judged, as shown, and what spoils it
    (a miss, an error) whatever the value; `case` names its line in `limits_of`."""

    value: float
    text: str
    problems: tuple[str, ...] = ()
    case: str = ""

    @property
    def shown(self) -> str:
        """The text with its problems."""
        return "; ".join((self.text, *self.problems))


@dataclass(frozen=True, slots=True)
class Target:
    """What is promised: `bound` is a factor of the baseline's figure (`SUBJECT`/`BASELINE`),
    or with `absolute` the most (or least) the subject's figure itself may be."""

    name: str
    figure: str  # the figure's short name
    scenario: str
    read: Callable[[Body], Figure | None]
    bound: float
    more_is_better: bool
    absolute: bool = False

    def better(self, value: float) -> bool:
        """Whether `value` (a ratio, or with `absolute` the figure) is on the good side."""
        return value >= self.bound if self.more_is_better else value <= self.bound


@dataclass(frozen=True, slots=True)
class Check:
    """A target against one run: `met` is None when a figure it needs was not measured."""

    subject: Figure | None
    baseline: Figure | None
    ratio: float | None  # subject / baseline
    met: bool | None

    @property
    def verdict(self) -> str:
        """'met', 'missed' or 'not measured'."""
        return {True: "met", False: "missed", None: "not measured"}[self.met]


def ratio(subject: Figure | None, other: Figure | None) -> float | None:
    """`subject`'s value over `other`'s, when both were measured."""
    if subject is None or other is None or other.value <= 0:
        return None
    return subject.value / other.value


def figure(target: Target, bodies: Bodies, label: str) -> Figure | None:
    """`label`'s figure for `target`, or None when its scenario gave none."""
    body = bodies.get((label, target.scenario))
    return target.read(body) if body else None


def check(target: Target, bodies: Bodies) -> Check:
    """`target` against one run's results."""
    subject, baseline = figure(target, bodies, SUBJECT), figure(target, bodies, BASELINE)
    times = ratio(subject, baseline)
    if subject is None or (times is None and not target.absolute):
        return Check(subject, baseline, times, None)
    met = target.better(subject.value if target.absolute else times or 0.0)
    return Check(subject, baseline, times, met and not subject.problems)


def _problems(errors: object, *more: tuple[str, bool]) -> tuple[str, ...]:
    """The errors counted by kind, then each text of `more` whose condition holds."""
    counted = [f"{k} x{v}" for k, v in sorted(errors.items())] if isinstance(errors, dict) else []
    return (*counted, *(text for text, holds in more if holds))


def _fanout(body: Body) -> Figure | None:
    size = max(body.get("sizes", []), key=lambda s: int(s["size"]), default=None)
    if size is None or size.get("max_ms") is None:
        return None
    got, want = size["received"], size["expected"]
    problems = _problems(size.get("errors"), (f"got {got}/{want}", got != want))
    n = f"N={size['size']:,}"
    return Figure(size["max_ms"], f"{size['max_ms']:,.1f} ms at {n}", problems, n)


def _rate(load: Body) -> Figure | None:
    rate = load.get("requests_per_s")
    if not isinstance(rate, int | float):
        return None
    short = load.get("connected") != load.get("connections")
    return Figure(
        rate, f"{rate:,.0f} req/s", _problems(load.get("errors"), ("not all connected", short))
    )


def _idle(body: Body) -> Figure | None:
    per = body.get("kib_per_waiter")
    if not isinstance(per, int | float):
        return None
    sent, short = body.get("sent", 0), body.get("sent", 0) < body.get("waiters", 0)
    text = f"{per:.1f} KiB at {sent:,} waiting"
    return Figure(per, text, _problems(body.get("errors"), ("not all waiting", short)))


ON_SCHEDULE = 0.99  # share of the requested rate the publisher must achieve
STREAM_CPU = 0.5  # share of its core the server may use for the stream


def _exact(body: Body, *more: tuple[str, bool]) -> tuple[str, tuple[str, ...]]:
    """A stream's missed and duplicated events, as shown; its problems: those, events out
    of order, its errors, and each text of `more` whose condition holds."""
    missed, dups, disorder = (body.get(k, 0) for k in ("missed", "duplicated", "out_of_order"))
    problems = _problems(
        body.get("errors"),
        ("events missed or duplicated", bool(missed or dups)),
        (f"{disorder} out of order", disorder != 0),
        *more,
    )
    return f"{missed} missed, {dups} duplicated", problems


def _p99(body: Body) -> float | None:
    p99 = (body.get("latency") or {}).get("p99_ms")
    return p99 if isinstance(p99, int | float) else None


def _stream(body: Body) -> Figure | None:
    """p99, with the publisher on schedule, every event delivered once, the server's CPU."""
    p99, cpu = _p99(body), body.get("server_cpu_share")
    if p99 is None:
        return None
    rate, achieved = body["rate"], body["published"] / max(1e-9, body["publishing_s"])
    late = body.get("publish_failed", 0) > 0 or achieved < ON_SCHEDULE * rate
    exact, problems = _exact(
        body,
        (f"published {achieved:.1f} of {rate:g} events/s", late),
        ("server CPU not measured", cpu is None),
        (f"server CPU above {STREAM_CPU:.0%}", cpu is not None and cpu > STREAM_CPU),
    )
    shown = "-" if cpu is None else f"{cpu:.0%}"
    text = f"p99 {p99:.1f} ms, {exact}, server CPU {shown}, {achieved:.1f} events/s published"
    return Figure(p99, text, problems)


def _overload(body: Body) -> Figure | None:
    """Deliveries per second, every event delivered once."""
    per_s, p99 = body.get("delivered_per_s"), _p99(body)
    if not isinstance(per_s, int | float) or p99 is None:
        return None
    exact, problems = _exact(body)
    return Figure(per_s, f"{per_s:,.0f} deliveries/s, p99 {p99:,.1f} ms, {exact}", problems)


TARGETS = [
    Target(
        f"stream 1,000 x 20/s: every event published on schedule, 0 missed, 0 duplicated, "
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
