"""Judging a suite's figures: the performance targets (`serve` against `asgi-uvicorn`, both
measured in the same run, as a ratio of the two figures; idle memory and the stream against
fixed bounds; `serve-tokens` against `serve`, `PARITY`), `serve` against the other servers
figure by figure, and what limited each figure (the server's core, the generator's, or
neither, and what else took the server's core)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.fanout import GENERATOR_BUSY
from bench.persist import BUSY as SERVER_BUSY
from bench.report import STREAMS

Body = dict[str, Any]
Bodies = dict[tuple[str, str], Body]  # the results of a run, by (variant, scenario)

SUBJECT = "serve"
BASELINE = "asgi-uvicorn"
TOKENS = "serve-tokens"  # `serve` with a publish token and a subscribe secret
STOCK = (BASELINE, "granian")
VERDICTS = {True: "met", False: "missed", None: "not measured"}
ON_SCHEDULE = 0.99  # share of the requested rate the publisher must achieve
STREAM_CPU = 0.5  # share of its core the server may use for the stream
WITHIN = 0.1  # how much worse than `serve` `serve-tokens`' figures may be
CROWDED = 0.1  # share of the server core that other work took above which it is noted
ROUND_TRIPS = "waiting (round trips, scheduling) sets the figure"
FIXED_RATE = "the fixed publish rate sets the load"


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

    def seen(self, bodies: Bodies, label: str) -> Figure | None:
        """`label`'s figure, or None when its scenario gave none."""
        body = bodies.get((label, self.scenario))
        return self.read(body) if body else None

    def check(self, bodies: Bodies, subject: str = SUBJECT, baseline: str = BASELINE) -> Check:
        """This target against one run, as `subject`'s figure over `baseline`'s."""
        mine, theirs = self.seen(bodies, subject), self.seen(bodies, baseline)
        times = ratio(mine, theirs)
        if mine is None or (times is None and not self.absolute):
            return Check(mine, theirs, times, None)
        value = mine.value if self.absolute else times or 0.0
        good = value >= self.bound if self.more_is_better else value <= self.bound
        return Check(mine, theirs, times, good and not mine.problems)


@dataclass(frozen=True, slots=True)
class Check:
    """A target against one run: `met` is None when a figure it needs was not measured."""

    subject: Figure | None
    baseline: Figure | None
    ratio: float | None  # subject / baseline
    met: bool | None


def ratio(subject: Figure | None, other: Figure | None) -> float | None:
    """`subject`'s value over `other`'s, when both were measured."""
    if subject is None or other is None or other.value <= 0:
        return None
    return subject.value / other.value


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
    problems = _problems(load.get("errors"), ("not all connected", short))
    return Figure(rate, f"{rate:,.0f} req/s", problems)


def _idle(body: Body) -> Figure | None:
    per = body.get("kib_per_waiter")
    if not isinstance(per, int | float):
        return None
    sent, short = body.get("sent", 0), body.get("sent", 0) < body.get("waiters", 0)
    text = f"{per:.1f} KiB at {sent:,} waiting"
    return Figure(per, text, _problems(body.get("errors"), ("not all waiting", short)))


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
        """Each part against one run, and whether every part was met (None when one was
        not measured)."""
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
            Target("stream p99", "stream p99", "stream", _stream_p99, 1 + WITHIN, False),
            Target(
                "stream server CPU", "stream server CPU", "stream", _stream_cpu, 1 + WITHIN, False
            ),
        ),
    )
]


def times(value: float | None) -> str:
    """A ratio as shown, or "-"."""
    return "-" if value is None else f"{value:.2f}x"


def _shown(seen: Figure | None) -> str:
    if seen is None:
        return "-"
    return f"{seen.value:,.0f}" if seen.value >= 100 else f"{seen.value:.1f}"


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
        cells = [*map(_shown, (mine, *seen.values())), *map(times, ratios.values())]
        lines.append(f"| {target.figure} | " + " | ".join(cells) + " |")
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


@dataclass(frozen=True, slots=True)
class Limit:
    """One figure's CPU shares and what they say limited it."""

    label: str
    scenario: str
    case: str
    server: float | None
    generator: float | None
    others: float | None
    verdict: str


def _limit(
    label: str,
    scenario: str,
    case: str,
    server: float | None,
    generator: float | None,
    others: float | None,
    waits_for: str = ROUND_TRIPS,
) -> Limit:
    """What the two CPU shares point at; `waits_for`: what else the figure waits on."""
    server_busy = server is not None and server >= SERVER_BUSY
    generator_busy = generator is not None and generator >= GENERATOR_BUSY
    if server is None:  # e.g. a server the user runs, given without its pid
        text = "could not tell (no server CPU figure)"
        text += "; the generator was busy" if generator_busy else ""
    elif server_busy and generator_busy:
        text = "both cores (server and generator)"
    elif server_busy or generator_busy:
        text = "the server core" if server_busy else "the generator (the server had CPU left)"
    else:
        text = f"neither core was saturated: {waits_for}"
    if others is not None and others >= CROWDED:
        text += f"; other work took {others:.0%} of the server core, so the figure is understated"
    return Limit(label, scenario, case, server, generator, others, text)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def limits_of(label: str, scenario: str, body: Body) -> list[Limit]:
    """The limits of one result (none for idle memory: it is not a rate or a latency).
    Shares are of one core, over the measured window (fan-out: publish to the last
    response)."""
    others = body.get("server_core_others")
    if scenario == "fanout":
        limits = []
        for size in body.get("sizes", []):
            rounds = size["rounds"]
            timed = [r for r in rounds if r.get("max_ms") and r.get("server_cpu_ms") is not None]
            server = None
            if timed:
                busy_ms = sum(r["server_cpu_ms"] for r in timed)
                server = min(1.0, busy_ms / sum(r["max_ms"] for r in timed))
            shares = [r["gen_cpu_share"] for r in rounds if r.get("gen_cpu_share") is not None]
            generator = statistics.fmean(shares) if shares else None
            case = f"N={size['size']:,}"
            limits.append(_limit(label, scenario, case, server, generator, others))
        return limits
    if scenario in ("publish", "catchup", *STREAMS):
        load = body.get("load", {}) if scenario == "catchup" else body
        server, generator = load.get("server_cpu_share"), load.get("gen_cpu_share")
        if scenario in STREAMS:
            case, waits_for = f"{body.get('subscribers')} x {body.get('rate')}/s", FIXED_RATE
        else:
            case, waits_for = f"{load.get('connections')} connections", ROUND_TRIPS
        return [_limit(label, scenario, case, server, generator, others, waits_for)]
    if scenario == "publish-persist":
        return [
            _limit(
                label,
                scenario,
                variant,
                _median([load.get("server_cpu_share") for load in loads]),
                _median([load.get("gen_cpu_share") for load in loads]),
                None,
                "waiting for the disk (fsync)" if "fsync" in variant else ROUND_TRIPS,
            )
            for variant, loads in body.get("runs", {}).items()
        ]
    return []
