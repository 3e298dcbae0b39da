"""Figures and how they are shown: latency summaries, a result as JSON (with the options
that produced it and the environment), a Markdown table of any mix of results, the plots,
and ``python -m bench report RESULTS.json... --out DIR``, which writes `results.json`
(every input), `results.md` (the table and the plots) and the plots into DIR."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FANOUT_PNG = "fanout-latency.png"
RATES_PNG = "requests-per-s.png"
PLOTS = {
    FANOUT_PNG: "Fan-out latency against N, per variant",
    RATES_PNG: "Requests/s per scenario and variant",
}
STREAMS = ("stream", "stream-overload", "stream-sse", "stream-sse-overload")  # long polls, SSE


@dataclass(frozen=True, slots=True)
class Latency:
    """p50 / p99 / max in milliseconds, or None when nothing arrived; `max_gap_ms` is the
    longest stretch with no delivery (a stall such as a collector pause)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    max_gap_ms: float | None


def summarize(latencies_ns: Iterable[int]) -> Latency:
    """Nearest-rank percentiles of nanosecond latencies, in milliseconds."""
    ordered = sorted(latencies_ns)
    if not ordered:
        return Latency(0, None, None, None, None)
    gaps = (b - a for a, b in zip([0, *ordered], ordered, strict=False))
    p50, p99 = (ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1] for p in (50, 99))
    return Latency(len(ordered), p50 / 1e6, p99 / 1e6, ordered[-1] / 1e6, max(gaps) / 1e6)


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Add up error counters."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


def problems(errors: object, *more: str) -> list[str]:
    """Error counts (`kind xN`), then each of `more` that is not empty."""
    counted = [f"{k} x{v}" for k, v in sorted(errors.items())] if isinstance(errors, dict) else []
    return [*counted, *filter(None, more)]


def errors_text(errors: object, *more: str) -> str:
    """`problems` as one line, or '-'."""
    return "; ".join(problems(errors, *more)) or "-"


def fixed(value: float | None, digits: int = 1, grouped: bool = False) -> str:
    """`value` with `digits` decimals (`grouped`: with thousands separators), or '-'."""
    return "-" if value is None else f"{value:{',' if grouped else ''}.{digits}f}"


def percent(value: float | None) -> str:
    """A share as a whole percentage, or '-'."""
    return "-" if value is None else f"{value * 100:.0f}%"


def result_payload(
    scenario: str, options: Mapping[str, object], report: DataclassInstance
) -> dict[str, object]:
    """`report`, the options that produced it and the environment, as JSON-ready values."""
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    environment = {
        "python": platform.python_version(),
        "loop": loop,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return {
        "scenario": scenario,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        "environment": environment,
        **dataclasses.asdict(report),
    }


def write_json(
    path: Path, scenario: str, options: Mapping[str, object], report: DataclassInstance
) -> None:
    """Write `result_payload` as JSON to `path`."""
    payload = result_payload(scenario, options, report)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a figure with its latency, CPU and problems."""

    label: str
    scenario: str
    case: str
    value: float | None
    unit: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    gen_cpu: float | None = None
    server_cpu: float | None = None
    problems: str = "-"


@dataclass(frozen=True, slots=True)
class Run:
    """One result: its label, where it came from, and what it holds."""

    label: str
    path: str
    payload: dict[str, Any]

    @property
    def scenario(self) -> str:
        """The scenario that wrote it."""
        return str(self.payload.get("scenario", "?"))

    @property
    def body(self) -> dict[str, Any]:
        """The results (older publish files nest them under "result")."""
        result = self.payload.get("result")
        return result if isinstance(result, dict) else self.payload


def _row(
    label: str, scenario: str, case: str, body: dict[str, Any], stream: str | None = None
) -> Row:
    """A row of a rate: requests/s of a closed loop, or events/s of a stream (with what
    went wrong with it, `stream`)."""
    if stream is None:
        short = body.get("connected", 0) < body.get("connections", 0)
        value, unit, extra = (
            body.get("requests_per_s"),
            "req/s",
            "not all connected" if short else "",
        )
    else:
        value, unit, extra = body.get("delivered_per_s"), "events/s", stream
    latency = body.get("latency") or {}
    return Row(
        label,
        scenario,
        case,
        value,
        unit,
        latency.get("p50_ms"),
        latency.get("p99_ms"),
        latency.get("max_ms"),
        body.get("gen_cpu_share"),
        body.get("server_cpu_share"),
        errors_text(body.get("errors"), extra),
    )


def rows_of(run: Run) -> list[Row]:
    """The table rows of one result."""
    body, label, scenario = run.body, run.label, run.scenario
    if scenario == "fanout":
        return [
            Row(
                label,
                scenario,
                f"N={size['size']}, {len(size['rounds'])} rounds, server "
                f"{fixed(size.get('server_us_per_delivery'), grouped=True)} us CPU/delivery",
                size.get("max_ms"),
                "ms to the last",
                size.get("p50_ms"),
                size.get("p99_ms"),
                size.get("max_ms"),
                problems=errors_text(
                    size.get("errors"), f"got {size['received']}/{size['expected']}"
                ),
            )
            for size in body.get("sizes", [])
        ]
    if scenario == "idle-memory":
        problems = errors_text(body.get("errors"))
        case, per = f"{body.get('sent')} waiting", body.get("kib_per_waiter")
        return [Row(label, scenario, case, per, "KiB/waiter", problems=problems)]
    if scenario == "publish":
        return [_row(label, scenario, f"{body.get('connections')} connections", body)]
    if scenario == "publish-persist":
        rows = []
        for variant, loads in body.get("runs", {}).items():
            median = statistics.median(load["requests_per_s"] for load in loads)
            middle = min(loads, key=lambda load: abs(load["requests_per_s"] - median))
            row = _row(label, scenario, f"{variant} (median of {len(loads)})", middle)
            rows.append(dataclasses.replace(row, value=median))
        return rows
    if scenario == "catchup":
        load, carried = body.get("load", {}), body.get("events_per_response")
        case = f"{load.get('connections')} connections, {carried} events/answer"
        return [_row(label, scenario, case, load)]
    if scenario in STREAMS:
        extra = f"missed {body.get('missed')}, duplicated {body.get('duplicated')}"
        if body.get("unanswered"):
            extra += f", {body.get('cut_off')} not read when the publisher gave up"
        took = max(body.get("publishing_s", 0.0), body.get("delivering_s", 0.0))
        if took > 1.1 * (planned := body.get("duration_s", 0.0)):
            extra += f"; publishing and delivery took {took:.0f} s, not {planned:g}: "
            extra += "the server fell behind"
        case = f"{body.get('subscribers')} x {body.get('rate')}/s for {body.get('duration_s')} s"
        case += f", server {fixed(body.get('server_us_per_delivery'))} us CPU/delivery"
        return [_row(label, scenario, case, body, extra)]
    return [Row(label, scenario, "?", None, "", problems="unknown scenario")]


def markdown_table(rows: list[Row], with_label: bool = True) -> str:
    """The rows as one Markdown table (`with_label`: a first column naming each row's run)."""
    first, rule = ("| run ", "| --- ") if with_label else ("", "")
    lines = [
        f"{first}| scenario | case | figure | p50 ms | p99 ms | max ms | gen CPU | server CPU "
        "| problems |",
        f"{rule}| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        digits = 0 if row.unit in ("req/s", "events/s") else 1
        label = f"| {row.label} " if with_label else ""
        lines.append(
            f"{label}| {row.scenario} | {row.case} | {fixed(row.value, digits, True)} {row.unit} "
            f"| {fixed(row.p50_ms, 2, True)} | {fixed(row.p99_ms, 2, True)} "
            f"| {fixed(row.max_ms, 2, True)} | {percent(row.gen_cpu)} | {percent(row.server_cpu)} "
            f"| {row.problems} |"
        )
    return "\n".join(lines)


def draw(runs: list[Run], rows: list[Row], directory: Path) -> list[str]:
    """Draw into `directory` the plots there is something for; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    fanouts = [(run.label, run.body.get("sizes", [])) for run in runs if run.scenario == "fanout"]
    if fanouts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for number, (label, sizes) in enumerate(fanouts):
            xs = [s["size"] for s in sizes]
            for key, style in (("p50_ms", ":"), ("p99_ms", "--"), ("max_ms", "-")):
                ys = [s.get(key) if s.get(key) is not None else float("nan") for s in sizes]
                name = f"{label} {key.removesuffix('_ms')}"
                ax.plot(xs, ys, style, color=f"C{number % 10}", marker="o", label=name)
        ax.set_xlabel("waiting subscribers N")
        ax.set_ylabel("publish -> response complete (ms)")
        ax.set_title("Fan-out latency against N")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        drawn.append(_save(fig, directory / FANOUT_PNG))
    bars = [r for r in rows if r.unit == "req/s" and r.value is not None]
    if bars:
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(bars)))
        values = [r.value or 0.0 for r in bars]
        colours = ["C0" if r.scenario == "catchup" else "C1" for r in bars]
        ax.barh([f"{r.label}: {r.scenario} {r.case}" for r in bars], values, color=colours)
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:,.0f}", va="center", fontsize="small")
        ax.set_xlim(0, max(values) * 1.2 or 1.0)
        ax.invert_yaxis()
        ax.set_xlabel("requests/s")
        ax.set_title("Requests/s per scenario")
        ax.grid(True, axis="x", alpha=0.3)
        drawn.append(_save(fig, directory / RATES_PNG))
    return drawn


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def write_report(specs: list[str], out: Path) -> list[Path]:
    """Read every ``[LABEL=]PATH`` (the label names its rows; default: the file name);
    write results.json, results.md and the plots into `out`; the files written."""
    runs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = Path(spec).stem, spec
        payload = json.loads(Path(path).read_text())
        if not isinstance(payload, dict) or "scenario" not in payload:
            raise ValueError(f"{path}: not a bench result (no 'scenario')")
        runs.append(Run(label, path, payload))
    rows = [row for run in runs for row in rows_of(run)]
    out.mkdir(parents=True, exist_ok=True)
    inputs = [{"label": r.label, "file": r.path, **r.payload} for r in runs]
    (out / "results.json").write_text(json.dumps(inputs, indent=2) + "\n")
    plots = draw(runs, rows, out)
    lines = ["# Benchmark results", "", markdown_table(rows), ""]
    lines += [f"![{PLOTS[name]}]({name})\n" for name in plots] + ["Runs:", ""]
    for run in runs:
        env = run.payload.get("environment", {})
        load = " ".join(f"{v:.2f}" for v in env.get("load_average", []))
        lines.append(
            f"- {run.label}: `{run.path}`, {run.scenario}, {env.get('time', '?')}, "
            f"Python {env.get('python', '?')}, {env.get('cpus', '?')} CPUs, load average {load}"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return [out / "results.json", out / "results.md", *(out / name for name in plots)]
