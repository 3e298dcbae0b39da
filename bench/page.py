"""The benchmarks page a suite writes: Markdown, PNG plots and every raw result as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.limits import Limit, limits_of
from bench.plan import Outcome, Plan, Variant
from bench.summary import (
    FANOUT_PNG,
    RATES_PNG,
    Row,
    Run,
    markdown_table,
    plot_fanout,
    plot_rates,
    rows_of,
    use_agg,
)
from bench.targets import (
    BASELINE,
    PARITY,
    SUBJECT,
    TARGETS,
    VERDICTS,
    Bodies,
    Figure,
    Parity,
    Target,
    check,
)
from bench.versus import times, title, versus


@dataclass(frozen=True, slots=True)
class Record:
    """Everything a suite run produced, and where and how it ran."""

    outcomes: list[Outcome]
    variants: list[Variant]
    plan: Plan
    quick: bool
    facts: dict[str, Any]
    server_core: int
    cores: tuple[int, ...]
    load_before: list[float]
    load_after: list[float]
    elapsed_s: float
    others: tuple[str, ...] = ()  # the servers given with --other, run by the user


def _runs(record: Record) -> list[Run]:
    return [
        Run(o.label, f"{o.label}/{o.scenario}", o.payload) for o in record.outcomes if o.payload
    ]


def write_page(record: Record, out_doc: Path) -> list[Path]:
    """Write `out_doc` and, in the directory named after it, the plots and results.json."""
    use_agg()
    assets = out_doc.with_suffix("")
    assets.mkdir(parents=True, exist_ok=True)
    runs = _runs(record)
    rows = [row for run in runs for row in rows_of(run)]
    results = assets / "results.json"
    results.write_text(json.dumps(_results(record), indent=2) + "\n")
    written = [out_doc]
    plots: list[str] = []
    if plot_fanout(runs, assets / FANOUT_PNG):
        written.append(assets / FANOUT_PNG)
        plots.append(f"![Fan-out latency against N, per variant]({assets.name}/{FANOUT_PNG})")
    if plot_rates(rows, assets / RATES_PNG):
        written.append(assets / RATES_PNG)
        plots.append(f"![Requests/s per scenario and variant]({assets.name}/{RATES_PNG})")
    out_doc.write_text(_markdown(record, rows, plots, assets.name) + "\n")
    return [*written, results]


def _results(record: Record) -> dict[str, Any]:
    return {
        "machine": record.facts,
        "suite": {
            "quick": record.quick,
            "plan": dataclasses.asdict(record.plan),
            "server_core": record.server_core,
            "generator_cores": list(record.cores),
            "load_average_before": record.load_before,
            "load_average_after": record.load_after,
            "elapsed_s": round(record.elapsed_s, 1),
        },
        "variants": [dataclasses.asdict(v) for v in record.variants],
        "runs": [
            {"label": o.label, "failed": o.failed, "error": o.error, **o.payload}
            if o.payload
            else {"label": o.label, "scenario": o.scenario, "failed": True, "error": o.error}
            for o in record.outcomes
        ],
    }


def _markdown(record: Record, rows: list[Row], plots: list[str], assets: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "This page is generated. To reproduce it on a fresh machine with at least two cores, "
        "run `pip install -e '.[dev]'`, then `python -m bench suite` from the repository "
        "root. It needs `redis-server` on PATH (e.g. from the `redis-server` package of "
        "your distribution), starts and stops every server itself"
        + (" (but those given with `--other`, which must be running)" if record.others else "")
        + ", and rewrites this page, "
        f"the plots in `{assets}/` and every raw figure in `{assets}/results.json` "
        f"(it took {_duration(record.elapsed_s)} on the machine below).",
        "",
    ]
    if record.quick:
        lines += [
            "> This run used `--quick`: tiny sizes and windows of a second or less, to check the "
            "harness, not the software. Its figures say nothing about performance.",
            "",
        ]
    # What a reader wants first: this server against the others, then the targets.
    lines += [f"## {title(record.others)}", "", *versus(_bodies(record), record.others), ""]
    lines += [plot for plot in plots if RATES_PNG in plot] + [""]
    lines += ["## Targets", "", *_targets(record), ""]
    lines += _method(record)
    lines += ["## Variants", "", *_variants(record), ""]
    lines += ["## Results", ""]
    for variant in _labels(record):
        lines += [f"### {variant}", ""]
        mine = [row for row in rows if row.label == variant]
        if mine:
            lines += [markdown_table(mine, with_label=False), ""]
        errors = [o for o in record.outcomes if o.label == variant and o.error]
        lines += [f"- {o.scenario} could not run: {o.error}" for o in errors]
        lines += [""] if errors else []
    lines += [plot for plot in plots if RATES_PNG not in plot] + [""]
    lines += ["## What limits each figure", "", *_limits(record), ""]
    lines += ["## Reading the figures", "", *_reading()]
    return "\n".join(lines).rstrip("\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def _labels(record: Record) -> list[str]:
    labels = [v.label for v in record.variants]
    labels += [o.label for o in record.outcomes if o.label not in labels]
    return list(dict.fromkeys(labels))


def _method(record: Record) -> list[str]:
    facts, plan = record.facts, record.plan
    versions = ", ".join(f"{name} {version}" for name, version in facts["versions"].items())
    cores = ",".join(map(str, record.cores))
    sizes = ", ".join(f"{n:,}" for n in plan.fanout_sizes)
    redis_sizes = ", ".join(f"{n:,}" for n in plan.redis_fanout_sizes)
    return [
        "## Machine and method",
        "",
        f"- Run on {facts['date']}: {facts['cpu']}, {facts['cores']} cores, {facts['os']}, "
        f"Python {facts['python']}.",
        f"- Software: {versions}.",
        f"- Speed of the server core: `sum(range(1000))` took {facts['python_speed_us']:g} µs "
        "in Python (best of 7, just before the suite). Shared machines of one class vary "
        "(runs of this page have seen 11 µs and 25 µs) and every figure below "
        "scales with it: compare runs with that in mind.",
        f"- Load average (1, 5, 15 minutes): {_loads(record.load_before)} before the suite, "
        f"{_loads(record.load_after)} after it. The suite itself keeps about two cores busy; "
        "a load well above that before it started means something else was running.",
        _crowding(record),
        f"- Every server process the suite started, and redis-server, ran pinned to core "
        f"{record.server_core}; "
        f"the load generator (its processes, and the coordinator that publishes) to core "
        f"{cores}; both with `sched_setaffinity`, as `taskset -c` would. Each variant got a "
        "fresh server, and idle memory another fresh one.",
        f"- Fan-out: N = {sizes} ({redis_sizes} with Redis), {plan.rounds} round(s) each. "
        f"Publish and catch-up: {plan.connections} keep-alive connections, {plan.warmup_s:g} s "
        f"of warm-up, then {plan.duration_s:g} s measured; each catch-up answer carries "
        f"{plan.catchup_events} events. Stream: {plan.stream_subscribers:,} subscribers "
        f"({plan.redis_stream_subscribers:,} with Redis), "
        f"{plan.stream_rate:g} events/s for {plan.stream_duration_s:g} s; overload: the "
        f"same subscribers at {plan.overload_rate:g} events/s for "
        f"{plan.overload_duration_s:g} s (without Redis). Idle memory: "
        f"{plan.idle_waiters:,} waiting subscribers. Persistence: "
        f"{plan.persist_rounds} round(s) per setting, the median shown.",
        "",
    ]


def _crowding(record: Record) -> str:
    shares = [
        (o.payload["server_core_others"], f"{o.label} {o.scenario}")
        for o in record.outcomes
        if isinstance(o.payload.get("server_core_others"), float)
    ]
    if not shares:
        return "- Nothing measured what else ran on the server core."
    share, where = max(shares)
    if share < 0.01:
        return "- No other process took a measurable share of the server core during a scenario."
    return (
        f"- Work other than the server's took at most {share:.0%} of the server core during "
        f"a scenario ({where}; see `others` below)."
    )


def _loads(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _bodies(record: Record) -> Bodies:
    return {(o.label, o.scenario): o.payload for o in record.outcomes if o.payload}


def _limited(label: str, target: Target, bodies: Bodies, seen: Figure | None) -> str:
    """What limited `label`'s figure for `target`, from `limits_of`."""
    body = bodies.get((label, target.scenario))
    if seen is None or body is None:
        return "-"
    limits = limits_of(label, target.scenario, body)
    verdicts = [lim.verdict for lim in limits if lim.case == seen.case or not seen.case]
    return verdicts[0] if verdicts else "-"


def _targets(record: Record) -> list[str]:
    """Each target: both figures, their ratio, the verdict, and what limited each figure."""
    bodies = _bodies(record)
    lines = [
        f"`{SUBJECT}` is judged against `{BASELINE}`, `LongpollApp` on stock uvicorn, measured "
        "in the same run: a ratio is `serve`'s figure over `asgi-uvicorn`'s. A target with "
        "a bound of its own (idle memory, the stream) is judged on `serve`'s figure alone, "
        "and any problem noted with a figure (a missed event, an error) misses the target. "
        "The rows that judge another variant against another baseline (what access control "
        "costs: `serve-tokens` against `serve`) name them in their cells, and are met when "
        "each of their figures is.",
        "",
        f"| target | {SUBJECT} | {BASELINE} | ratio | verdict | {SUBJECT} limited by "
        f"| {BASELINE} limited by |",
        "| --- | --- | --- | ---: | --- | --- | --- |",
    ]
    for target in TARGETS:
        result = check(target, bodies)
        mine, theirs = result.subject, result.baseline
        lines.append(
            f"| {target.name} | {_shown(mine)} | {_shown(theirs)} | {times(result.ratio)} "
            f"| **{result.verdict}** | {_limited(SUBJECT, target, bodies, mine)} "
            f"| {_limited(BASELINE, target, bodies, theirs)} |"
        )
    return lines + [_parity(parity, bodies) for parity in PARITY]


def _parity(parity: Parity, bodies: Bodies) -> str:
    """A `Parity` target as one row: each part's figures and ratio in turn, and what limited
    each variant's figures, scenario by scenario."""
    checks, met = parity.judge(bodies)
    sides = {
        parity.subject: [result.subject for result in checks],
        parity.baseline: [result.baseline for result in checks],
    }
    figures, limits = [], []
    for label, seen in sides.items():
        pairs = list(zip(parity.parts, seen, strict=True))
        shown = "; ".join(f"{part.scenario} {_shown(mine)}" for part, mine in pairs)
        figures.append(f"`{label}`: {shown}")
        by_scenario = {part.scenario: _limited(label, part, bodies, mine) for part, mine in pairs}
        limits.append("; ".join(f"{name}: {limit}" for name, limit in by_scenario.items()))
    ratios = "; ".join(
        f"{part.figure} {times(result.ratio)}"
        for part, result in zip(parity.parts, checks, strict=True)
    )
    return (
        f"| {parity.name} | {figures[0]} | {figures[1]} | {ratios} | **{VERDICTS[met]}** "
        f"| {limits[0]} | {limits[1]} |"
    )


def _shown(seen: Figure | None) -> str:
    return "not measured" if seen is None else seen.shown


def _variants(record: Record) -> list[str]:
    lines = ["| variant | server | scenarios |", "| --- | --- | --- |"]
    for variant in record.variants:
        server = variant.server if "`" in variant.server else f"`{variant.server}`"
        lines.append(f"| {variant.label} | {server} | {', '.join(variant.scenarios)} |")
    plan = record.plan
    return [
        *lines,
        "",
        "`serve` is `longpoll serve`, the project's own server. `serve-tokens` is "
        "`longpoll serve` with access control on, from its environment: a publish token and "
        "a subscribe secret (32 random bytes each, fresh for every suite). Every publish of "
        "the load generator then sends the token as `Authorization: Bearer`, and every "
        "subscribe a token (JWT) signed with the secret that grants its category, in the "
        "same header (the server verifies it once and keeps it); an answer 401 counts as an "
        "error. It runs side by side with `serve`, and the targets compare the two. Both "
        "count the Prometheus metrics, as `longpoll serve` always does. `asgi-uvicorn` is "
        "`LongpollApp`, the ASGI app (`bench/apps.py`: memory backend, default options, the "
        "garbage-collector settings of `longpoll serve`), on stock uvicorn with uvloop and "
        "httptools: what users who mount the ASGI app get, and the baseline of the targets. "
        "`granian` serves that app through granian's plain ASGI interface. `floor` is stock "
        "uvicorn serving an app that does the least (`bench.apps:floor_app`: no storage, no "
        "validation, no timeouts, no disconnect watching, one shared future for every "
        "waiting request, the same 100 events for every catch-up): what any Python ASGI app "
        "on uvicorn can reach on this "
        "machine, measured in the same run.",
        "",
        "Every server-side process shares the one server core, so `redis-2` shows what a "
        "second worker and Redis cost there, not how two workers scale over two cores (this "
        f"machine has {record.facts['cores']} cores, one of them for the load generator). "
        "With two workers each counts only its own waiting subscribers, so there the harness "
        f"waits {plan.settle_s:g} s after sending the subscribe requests instead of asking "
        "the server.",
    ]


def _limits(record: Record) -> list[str]:
    limits: list[Limit] = []
    for outcome in record.outcomes:
        if outcome.payload:
            limits += limits_of(outcome.label, outcome.scenario, outcome.payload)
    return [
        "From the CPU each side used while the figure was measured, as a share of one core "
        "(fan-out: from the publish to the last response; with Redis, the server's share "
        "includes redis-server): a server near all of its core is the limit itself; a busy "
        "generator means the server could do more than the figure shows. `others` is the "
        "share of the server core that other processes (or the hypervisor, as steal time) "
        "took over the whole scenario: that much CPU time was missing from the server.",
        "",
        "| variant | scenario | case | server CPU | generator CPU | others | limited by |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
        *(
            f"| {lim.label} | {lim.scenario} | {lim.case} | {_pct(lim.server)} "
            f"| {_pct(lim.generator)} | {_pct(lim.others)} | {lim.verdict} |"
            for lim in limits
        ),
    ]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _reading() -> list[str]:
    return [
        "- fanout: N subscribers wait on one category, one publish; the figure is the time "
        "from writing the publish to the last subscriber's complete response, over all "
        "rounds (p50/p99 pooled over the rounds).",
        "- publish, catchup: requests answered per second by a closed loop (each connection "
        "sends its next request when the last is answered); latency is request to answer.",
        "- stream: events delivered per second of publishing, and latency from the publish "
        "to each subscriber's receipt (including its re-poll); every subscriber's missed, "
        "duplicated and out-of-order events are counted exactly and must be 0. A server "
        "that cannot keep up slows the publisher down (each publish waits for its answer): "
        "the row then says how long publishing took. stream-overload is the same at a rate "
        "meant to be more than the server can deliver one event per answer: the figure is "
        "the deliveries per second it sustains (a subscriber's re-poll may then carry "
        "several events).",
        "- idle-memory: the server's resident memory while the subscribers wait, minus "
        "before, per subscriber.",
        "- gen CPU, server CPU: CPU used over the measured window, as a share of one core.",
        "- How each scenario measures, and how to run one alone: `bench/README.md`.",
    ]
