"""The benchmarks page a suite writes: `page.md` filled in with the figures, the plots, and
every raw result in `results.json`; and the facts about the machine it gives."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.limits import limits_of
from bench.redis_server import REDIS_SERVER
from bench.report import FANOUT_PNG, PLOTS, RATES_PNG, Run, draw, markdown_table, percent, rows_of
from bench.suite import Outcome, Plan, Variant
from bench.targets import (
    BASELINE,
    PARITY,
    SUBJECT,
    TARGETS,
    VERDICTS,
    Bodies,
    Figure,
    Target,
    times,
    versus,
)

TEMPLATE = Path(__file__).with_name("page.md")
YARDSTICK = """
import os, timeit
os.sched_setaffinity(0, {%d})
print(min(timeit.repeat("sum(range(1000))", number=2000, repeat=7)) / 2000 * 1e6)
"""


def machine_facts(server_core: int) -> dict[str, object]:
    """Date, CPU, cores, OS, Python, the server software's versions, and the speed of the
    server core: microseconds that `sum(range(1000))` takes there, best of 7 (shared
    machines vary, and every figure of a Python server scales with it)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        models = [line.partition(":")[2].strip() for line in info if line.startswith("model name")]
    except OSError:
        models = []
    speed = _run(sys.executable, "-c", YARDSTICK % server_core)
    try:
        shown = _run(REDIS_SERVER, "--version")
        tagged = [word[2:] for word in shown.split() if word.startswith("v=")]
        redis = tagged[0] if tagged else shown.strip()
    except (OSError, subprocess.SubprocessError):
        redis = "not found"
    versions: dict[str, str] = {}
    for name in ("longpoll", "uvicorn", "uvloop", "granian", "redis"):
        shown_name = "redis-py" if name == "redis" else name
        try:
            versions[shown_name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[shown_name] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": models[0] if models and models[0] else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_speed_us": round(float(speed), 1),
        "versions": {**versions, "redis-server": redis or "unknown"},
    }


def _run(*command: str) -> str:
    """What `command` writes on its standard output (in a minute at most)."""
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


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
    elapsed_s: float = 0.0
    others: tuple[str, ...] = ()  # the servers given with --other, run by the user

    @property
    def bodies(self) -> Bodies:
        """The results, by (variant, scenario)."""
        return {(o.label, o.scenario): o.payload for o in self.outcomes if o.payload}


def write_page(record: Record, out_doc: Path) -> list[Path]:
    """Write `out_doc` and, in the directory named after it, the plots and results.json."""
    assets = out_doc.with_suffix("")
    assets.mkdir(parents=True, exist_ok=True)
    outcomes = [o for o in record.outcomes if o.payload]
    runs = [Run(o.label, f"{o.label}/{o.scenario}", o.payload) for o in outcomes]
    rows = [row for run in runs for row in rows_of(run)]
    results = assets / "results.json"
    results.write_text(json.dumps(_results(record), indent=2) + "\n")
    plots = {name: f"![{PLOTS[name]}]({assets.name}/{name})\n" for name in draw(runs, rows, assets)}
    results_md = ""
    labels = [v.label for v in record.variants] + [o.label for o in record.outcomes]
    for label in dict.fromkeys(labels):
        mine = [row for row in rows if row.label == label]
        mine_failed = [o for o in record.outcomes if o.label == label and o.error]
        errors = [f"- {o.scenario} could not run: {o.error}\n" for o in mine_failed]
        results_md += f"### {label}\n\n" + (markdown_table(mine, False) + "\n\n" if mine else "")
        results_md += "".join(errors) + ("\n" if errors else "")
    facts, plan, bodies = record.facts, record.plan, record.bodies
    text = string.Template(TEMPLATE.read_text()).substitute(
        others_running=" (but those given with `--other`, which must be running)"
        if record.others
        else "",
        assets=assets.name,
        duration=f"{record.elapsed_s:.0f} s"
        if record.elapsed_s < 120
        else f"{record.elapsed_s / 60:.1f} minutes",
        quick="> This run used `--quick`: tiny sizes and windows of a second or less, to check "
        "the harness, not the software. Its figures say nothing about performance.\n\n"
        if record.quick
        else "",
        title=f"{SUBJECT} against "
        + ("the alternatives" if record.others else "stock ASGI servers"),
        versus="\n".join(versus(bodies, record.others)),
        rates_plot=plots.get(RATES_PNG, ""),
        targets="".join(f"\n{_target(target, bodies)}" for target in TARGETS)
        + "".join(f"\n{_parity(parity, bodies)}" for parity in PARITY),
        date=facts["date"],
        cpu=facts["cpu"],
        cores=facts["cores"],
        os=facts["os"],
        python=facts["python"],
        versions=", ".join(f"{name} {version}" for name, version in facts["versions"].items()),
        speed=f"{facts['python_speed_us']:g}",
        load_before=" ".join(f"{v:.2f}" for v in record.load_before),
        load_after=" ".join(f"{v:.2f}" for v in record.load_after),
        crowding=_crowding(record),
        server_core=record.server_core,
        generator_cores=",".join(map(str, record.cores)),
        sizes=", ".join(f"{n:,}" for n in plan.fanout_sizes),
        redis_sizes=", ".join(f"{n:,}" for n in plan.redis_fanout_sizes),
        rounds=plan.rounds,
        connections=plan.connections,
        warmup=f"{plan.warmup_s:g}",
        measured=f"{plan.duration_s:g}",
        catchup_events=plan.catchup_events,
        stream_subscribers=f"{plan.stream_subscribers:,}",
        redis_stream_subscribers=f"{plan.redis_stream_subscribers:,}",
        stream_rate=f"{plan.stream_rate:g}",
        stream_duration=f"{plan.stream_duration_s:g}",
        overload_rate=f"{plan.overload_rate:g}",
        overload_duration=f"{plan.overload_duration_s:g}",
        idle_waiters=f"{plan.idle_waiters:,}",
        persist_rounds=plan.persist_rounds,
        variants="".join(
            f"\n| {v.label} | {v.server if '`' in v.server else f'`{v.server}`'} "
            f"| {', '.join(v.scenarios)} |"
            for v in record.variants
        ),
        settle=f"{plan.settle_s:g}",
        results=results_md,
        fanout_plot=plots.get(FANOUT_PNG, ""),
        limits="".join(
            f"\n| {lim.label} | {lim.scenario} | {lim.case} | {percent(lim.server)} "
            f"| {percent(lim.generator)} | {percent(lim.others)} | {lim.verdict} |"
            for o in outcomes
            for lim in limits_of(o.label, o.scenario, o.payload)
        ),
    )
    out_doc.write_text(text.rstrip("\n") + "\n")
    return [out_doc, *(assets / name for name in plots), results]


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


def _limited(
    label: str, target: Target, bodies: Bodies, seen: Figure | None, scenario: str = ""
) -> str:
    """What limited `label`'s figure for `target` (in `scenario`, default the target's)."""
    scenario = scenario or target.scenario
    body = bodies.get((label, scenario))
    if seen is None or body is None:
        return "-"
    limits = limits_of(label, scenario, body)
    verdicts = [lim.verdict for lim in limits if lim.case == seen.case or not seen.case]
    return verdicts[0] if verdicts else "-"


def _shown(seen: Figure | None) -> str:
    return "not measured" if seen is None else seen.shown


def _target(target: Target, bodies: Bodies) -> str:
    """A target as a row: both figures, their ratio, the verdict, what limited each (a
    target `against` another scenario of `serve`: the scenarios named, and those `also`
    shown beside)."""
    result = target.check(bodies)
    mine, theirs = result.subject, result.baseline
    shown = [_shown(mine), _shown(theirs)]
    limits = [_limited(SUBJECT, target, bodies, mine), _limited(BASELINE, target, bodies, theirs)]
    sides = zip((target.scenario, target.against), target.also, strict=True)
    for side, (scenario, also) in enumerate(sides if target.against else ()):
        seen = target.seen(bodies, SUBJECT, scenario)
        beside = _shown(target.seen(bodies, SUBJECT, also))
        shown[side] = f"`{SUBJECT}` {scenario}: {_shown(seen)}; {also}: {beside}"
        limits[side] = f"{scenario}: {_limited(SUBJECT, target, bodies, seen, scenario)}"
    return (
        f"| {target.name} | {shown[0]} | {shown[1]} | {times(result.ratio)} "
        f"| **{VERDICTS[result.met]}** | {limits[0]} | {limits[1]} |"
    )


def _parity(parity: Any, bodies: Bodies) -> str:
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
