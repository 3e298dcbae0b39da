"""``python -m bench report RESULTS.json... --out DIR``: one Markdown table and PNG plots.

Reads the JSON files the scenarios write (`--json`), in any mix; each may be given
as ``LABEL=PATH`` to name its rows (default: the file name without `.json`).
Writes into DIR: `results.json` (every input, as read), `results.md` (the table and
the plots) and, when there is something to draw, `fanout-latency.png` (fan-out
latency against N) and `requests-per-s.png` (requests/s per scenario).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FANOUT_PNG = "fanout-latency.png"
RATES_PNG = "requests-per-s.png"
STREAMS = ("stream", "stream-overload")  # what the stream runner measures, at two rates


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
    """One input file."""

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


def load_runs(specs: list[str]) -> list[Run]:
    """Read every ``[LABEL=]PATH``."""
    runs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = Path(spec).stem, spec
        payload = json.loads(Path(path).read_text())
        if not isinstance(payload, dict) or "scenario" not in payload:
            raise ValueError(f"{path}: not a bench result (no 'scenario')")
        runs.append(Run(label, path, payload))
    return runs


def _problems(errors: object, extra: str = "") -> str:
    parts = [f"{k} x{v}" for k, v in sorted(errors.items())] if isinstance(errors, dict) else []
    if extra:
        parts.append(extra)
    return "; ".join(parts) or "-"


def _latency(latency: object) -> dict[str, float | None]:
    if not isinstance(latency, dict):
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {k: latency.get(k) for k in ("p50_ms", "p99_ms", "max_ms")}


def _load_row(label: str, scenario: str, case: str, load: dict[str, Any]) -> Row:
    short = load.get("connected", 0) < load.get("connections", 0)
    return Row(
        label,
        scenario,
        case,
        load.get("requests_per_s"),
        "req/s",
        **_latency(load.get("latency")),
        gen_cpu=load.get("gen_cpu_share"),
        server_cpu=load.get("server_cpu_share"),
        problems=_problems(load.get("errors"), "not all connected" if short else ""),
    )


def rows_of(run: Run) -> list[Row]:
    """The table rows of one input."""
    body, label, scenario = run.body, run.label, run.scenario
    if scenario == "fanout":
        return [
            Row(
                label,
                scenario,
                f"N={size['size']}, {len(size['rounds'])} rounds, server "
                f"{_num(size.get('server_us_per_delivery'))} us CPU/delivery",
                size.get("max_ms"),
                "ms to the last",
                size.get("p50_ms"),
                size.get("p99_ms"),
                size.get("max_ms"),
                problems=_problems(
                    size.get("errors"), f"got {size['received']}/{size['expected']}"
                ),
            )
            for size in body.get("sizes", [])
        ]
    if scenario == "idle-memory":
        return [
            Row(
                label,
                scenario,
                f"{body.get('sent')} waiting",
                body.get("kib_per_waiter"),
                "KiB/waiter",
                problems=_problems(body.get("errors")),
            )
        ]
    if scenario == "publish":
        return [_load_row(label, scenario, f"{body.get('connections')} connections", body)]
    if scenario == "publish-persist":
        rows = []
        for variant, loads in body.get("runs", {}).items():
            median = statistics.median(load["requests_per_s"] for load in loads)
            middle = min(loads, key=lambda load: abs(load["requests_per_s"] - median))
            row = _load_row(label, scenario, f"{variant} (median of {len(loads)})", middle)
            rows.append(dataclasses.replace(row, value=median))
        return rows
    if scenario == "catchup":
        load = body.get("load", {})
        case = (
            f"{load.get('connections')} connections, "
            f"{body.get('events_per_response')} events/answer"
        )
        return [_load_row(label, scenario, case, load)]
    if scenario in STREAMS:
        missed, dups = body.get("missed"), body.get("duplicated")
        extra = f"missed {missed}, duplicated {dups}"
        took, planned = body.get("publishing_s", 0.0), body.get("duration_s", 0.0)
        if took > 1.1 * planned:
            extra += f"; publishing took {took:.0f} s, not {planned:g}: the server fell behind"
        return [
            Row(
                label,
                scenario,
                f"{body.get('subscribers')} x {body.get('rate')}/s for {body.get('duration_s')} s",
                body.get("delivered_per_s"),
                "events/s",
                **_latency(body.get("latency")),
                gen_cpu=body.get("gen_cpu_share"),
                server_cpu=body.get("server_cpu_share"),
                problems=_problems(body.get("errors"), extra),
            )
        ]
    return [Row(label, scenario, "?", None, "", problems="unknown scenario")]


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def markdown_table(rows: list[Row], with_label: bool = True) -> str:
    """The rows as one Markdown table (`with_label`: a first column naming each row's run)."""
    first, rule = ("| run ", "| --- ") if with_label else ("", "")
    lines = [
        f"{first}| scenario | case | figure | p50 ms | p99 ms | max ms | gen CPU | server CPU "
        "| problems |",
        f"{rule}| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        figure = f"{_num(row.value, 0 if row.unit in ('req/s', 'events/s') else 1)} {row.unit}"
        label = f"| {row.label} " if with_label else ""
        lines.append(
            f"{label}| {row.scenario} | {row.case} | {figure} | {_num(row.p50_ms, 2)} "
            f"| {_num(row.p99_ms, 2)} | {_num(row.max_ms, 2)} | {_pct(row.gen_cpu)} "
            f"| {_pct(row.server_cpu)} | {row.problems} |"
        )
    return "\n".join(lines)


def plot_fanout(runs: list[Run], path: Path) -> bool:
    """Fan-out latency against N, one colour per run; False when there is no fan-out run."""
    import matplotlib.pyplot as plt

    series = [(run.label, run.body.get("sizes", [])) for run in runs if run.scenario == "fanout"]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for number, (label, sizes) in enumerate(series):
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_rates(rows: list[Row], path: Path) -> bool:
    """A bar per requests/s row; False when there is none."""
    import matplotlib.pyplot as plt

    bars = [r for r in rows if r.unit == "req/s" and r.value is not None]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(bars)))
    names = [f"{r.label}: {r.scenario} {r.case}" for r in bars]
    values = [r.value or 0.0 for r in bars]
    ax.barh(names, values, color=["C0" if r.scenario == "catchup" else "C1" for r in bars])
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize="small")
    ax.set_xlim(0, max(values) * 1.2 or 1.0)
    ax.invert_yaxis()
    ax.set_xlabel("requests/s")
    ax.set_title("Requests/s per scenario")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _load_average(value: object) -> str:
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" for v in value if isinstance(v, int | float))
    return "?"


def use_agg() -> None:
    """Draw into files, without a display."""
    import matplotlib

    matplotlib.use("Agg")


def write_report(specs: list[str], out: Path) -> list[Path]:
    """Write results.json, results.md and the plots into `out`; the files written."""
    use_agg()
    runs = load_runs(specs)
    rows = [row for run in runs for row in rows_of(run)]
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    written[0].write_text(
        json.dumps([{"label": r.label, "file": r.path, **r.payload} for r in runs], indent=2) + "\n"
    )
    lines = ["# Benchmark results", "", markdown_table(rows), ""]
    if plot_fanout(runs, out / FANOUT_PNG):
        written.append(out / FANOUT_PNG)
        lines += [f"![fan-out latency against N]({FANOUT_PNG})", ""]
    if plot_rates(rows, out / RATES_PNG):
        written.append(out / RATES_PNG)
        lines += [f"![requests/s per scenario]({RATES_PNG})", ""]
    lines += ["Runs:", ""]
    for run in runs:
        env = run.payload.get("environment", {})
        lines.append(
            f"- {run.label}: `{run.path}`, {run.scenario}, {env.get('time', '?')}, "
            f"Python {env.get('python', '?')}, {env.get('cpus', '?')} CPUs, "
            f"load average {_load_average(env.get('load_average'))}"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    written.insert(1, out / "results.md")
    return written
