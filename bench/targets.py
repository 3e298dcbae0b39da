"""The project's performance targets: `serve` (`longpoll serve`) against `asgi-uvicorn`
(`LongpollApp` on stock uvicorn), both measured in the same run, as a ratio of the two
figures; idle memory and the stream's latency and CPU against fixed bounds; and what access
control may cost: `serve-tokens` against `serve`, figure by figure (`PARITY`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]
Bodies = dict[tuple[str, str], Body]  # the results of a run, by (variant, scenario)

SUBJECT = "serve"
BASELINE = "asgi-uvicorn"
TOKENS = "serve-tokens"  # `serve` with a publish token and a subscribe secret; its baseline


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


VERDICTS = {True: "met", False: "missed", None: "not measured"}


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
        return VERDICTS[self.met]


def ratio(subject: Figure | None, other: Figure | None) -> float | None:
    """`subject`'s value over `other`'s, when both were measured."""
    if subject is None or other is None or other.value <= 0:
        return None
    return subject.value / other.value


def figure(target: Target, bodies: Bodies, label: str) -> Figure | None:
    """`label`'s figure for `target`, or None when its scenario gave none."""
    body = bodies.get((label, target.scenario))
    return target.read(body) if body else None


def check(
    target: Target, bodies: Bodies, subject_label: str = SUBJECT, baseline_label: str = BASELINE
) -> Check:
    """`target` against one run's results, as `subject_label`'s figure over `baseline_label`'s."""
    subject = figure(target, bodies, subject_label)
    baseline = figure(target, bodies, baseline_label)
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


def _on_schedule(body: Body) -> tuple[float, tuple[str, bool]]:
    """The events/s the stream's publisher achieved, and the problem that holds if it fell
    behind (as `_problems` takes it)."""
    rate, achieved = body["rate"], body["published"] / max(1e-9, body["publishing_s"])
    late = body.get("publish_failed", 0) > 0 or achieved < ON_SCHEDULE * rate
    return achieved, (f"published {achieved:.1f} of {rate:g} events/s", late)


def _stream(body: Body) -> Figure | None:
    """p99, with the publisher on schedule, every event delivered once, the server's CPU."""
    p99, cpu = _p99(body), body.get("server_cpu_share")
    if p99 is None:
        return None
    achieved, behind = _on_schedule(body)
    exact, problems = _exact(
        body,
        behind,
        ("server CPU not measured", cpu is None),
        (f"server CPU above {STREAM_CPU:.0%}", cpu is not None and cpu > STREAM_CPU),
    )
    shown = "-" if cpu is None else f"{cpu:.0%}"
    text = f"p99 {p99:.1f} ms, {exact}, server CPU {shown}, {achieved:.1f} events/s published"
    return Figure(p99, text, problems)


def _stream_p99(body: Body) -> Figure | None:
    """p99, with the publisher on schedule and every event delivered once."""
    p99 = _p99(body)
    if p99 is None:
        return None
    exact, problems = _exact(body, _on_schedule(body)[1])
    return Figure(p99, f"p99 {p99:.1f} ms, {exact}", problems)


def _stream_cpu(body: Body) -> Figure | None:
    """The server's CPU while the stream was published, as a share of its core."""
    cpu = body.get("server_cpu_share")
    return Figure(cpu, f"server CPU {cpu:.0%}") if isinstance(cpu, int | float) else None


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


@dataclass(frozen=True, slots=True)
class Parity:
    """A promise that `subject`'s figures stay close to `baseline`'s in the same run: each
    of `parts` (a target judged on `subject`'s figure over `baseline`'s) is met."""

    name: str
    subject: str
    baseline: str
    parts: tuple[Target, ...]

    def judge(self, bodies: Bodies) -> tuple[list[Check], bool | None]:
        """Each part against one run's results, and whether every part was met (None when
        one was not measured)."""
        checks = [check(part, bodies, self.subject, self.baseline) for part in self.parts]
        verdicts = [part.met for part in checks]
        return checks, None if None in verdicts else all(verdicts)


WITHIN = 0.1  # how much worse than `serve` `serve-tokens`' figures may be

PARITY = [
    Parity(
        f"with tokens and metrics on, publish and stream figures within {WITHIN:.0%} of "
        f"{SUBJECT} in the same run: {TOKENS} publish req/s >= {1 - WITHIN:g}x {SUBJECT}'s, "
        f"stream p99 and server CPU <= {1 + WITHIN:g}x, 0 missed, 0 duplicated",
        TOKENS,
        SUBJECT,
        (
            Target("publish req/s", "publish req/s", "publish", _rate, 1 - WITHIN, True),
            Target("stream p99", "stream p99", "stream", _stream_p99, 1 + WITHIN, False),
            Target(
                "stream server CPU", "stream server CPU", "stream", _stream_cpu, 1 + WITHIN, False
            ),
        ),
    )
]
