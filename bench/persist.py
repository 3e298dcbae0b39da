"""Publish throughput of `longpoll serve` with file persistence off, on, and with fsync.

Starts a fresh `longpoll serve` for each variant (pinned to one core, as
`taskset -c CORE` would), runs the publish scenario against it, stops it; variants
take turns for each round, so drift over the run spreads over all of them. Ratios
are to the persistence-off median of the same run.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.http import parse_target
from bench.launch import serve_variant
from bench.load import LEAD_S, LOAD_HEADER, LoadReport, load_line
from bench.publish import publish_notes, run_publish

VARIANTS: dict[str, list[str]] = {
    "off": [],
    "persist": ["--persist", "{file}"],
    "persist+fsync": ["--persist", "{file}", "--fsync"],
}


@dataclass
class PersistReport:
    """Every run of every variant, and the medians."""

    rounds: int
    runs: dict[str, list[LoadReport]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    file_bytes: dict[str, int] = field(default_factory=dict)

    def median(self, variant: str, busy: bool = False) -> float | None:
        """Median publishes per second of `variant` over the rounds.

        `busy`: only over runs whose server had its core to itself (see BUSY).
        """
        rates = [r.requests_per_s for r in self.runs[variant] if not busy or _had_core(r)]
        return statistics.median(rates) if rates else None

    def median_server_us(self, variant: str) -> float | None:
        """Median server CPU per publish of `variant`, in microseconds, if measured."""
        costs = [r.server_us_per_request for r in self.runs[variant]]
        known = [c for c in costs if c is not None]
        return statistics.median(known) if known else None

    @property
    def failed(self) -> bool:
        """True when any run had errors."""
        return any(r.failed for runs in self.runs.values() for r in runs)


BUSY = 0.9  # server CPU share of its core above which a run counts as uncontended


def _had_core(run: LoadReport) -> bool:
    return run.server_cpu_share is not None and run.server_cpu_share >= BUSY


def run_persist(
    *,
    server_core: int,
    cores: tuple[int, ...] | None,
    procs: int,
    connections: int,
    warmup_s: float,
    duration_s: float,
    rounds: int,
    max_requests: int,
    payload_bytes: int,
    directory: Path | None,
    flush_period: float | None,
    lead_s: float = LEAD_S,
) -> PersistReport:
    """Run each variant `rounds` times, taking turns; return every result."""
    report = PersistReport(rounds=rounds)
    workdir = Path(tempfile.mkdtemp(prefix="longpoll-bench-", dir=directory))
    try:
        for number in range(rounds):
            for name, template in VARIANTS.items():
                data_file = workdir / f"{name}-{number}.jsonl"
                flags = [flag.replace("{file}", str(data_file)) for flag in template]
                if flush_period is not None and template:
                    flags += ["--flush-period", str(flush_period)]
                with serve_variant(flags, server_core, workdir / "serve.log") as served:
                    result = run_publish(
                        parse_target(served.url),
                        "/publish",
                        f"bench-{name}",
                        connections=connections,
                        procs=procs,
                        cores=cores,
                        warmup_s=warmup_s,
                        duration_s=duration_s,
                        max_requests=max_requests,
                        payload_bytes=payload_bytes,
                        lead_s=lead_s,
                        server_pid=served.pid,
                    )
                report.runs.setdefault(name, []).append(result)
                report.commands[name] = " ".join(served.command)
                if data_file.exists():
                    report.file_bytes[name] = data_file.stat().st_size
                    data_file.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def persist_table(report: PersistReport, connections: int) -> str:
    """Every run, then the medians with their ratio to persistence off."""
    baseline = report.median("off")
    lines = [
        f"publish with persistence: {connections} connections, {report.rounds} round(s) "
        "per variant, taking turns",
        "",
        "server commands (port chosen by the server):",
        *(f"  {name}: {command}" for name, command in report.commands.items()),
        "",
        PUBLISH_HEADER_WITH_ROUND,
    ]
    for name, runs in report.runs.items():
        for number, run in enumerate(runs, 1):
            lines.append(load_line(f"{name} #{number}", run, baseline))
    lines += ["", "medians over the rounds (ratio: to persistence off):"]
    cost_baseline = report.median_server_us("off")
    for name in report.runs:
        median = report.median(name)
        cost = report.median_server_us(name)
        text = f"  {name:<14} {_rate(median, baseline)}"
        if cost is not None:
            text += f"   server {cost:.1f} us CPU per publish"
            if cost_baseline:
                text += f" (ratio {cost / cost_baseline:.2f})"
        lines.append(text)
    busy_baseline = report.median("off", busy=True)
    lines += ["", f"medians over the runs whose server used >= {BUSY:.0%} of its core:"]
    for name, runs in report.runs.items():
        kept = sum(1 for r in runs if _had_core(r))
        lines.append(
            f"  {name:<14} {_rate(report.median(name, busy=True), busy_baseline)}"
            f"   ({kept} of {len(runs)} runs)"
        )
    lines += ["", *publish_notes()]
    return "\n".join(lines)


PUBLISH_HEADER_WITH_ROUND = "variant" + LOAD_HEADER[len("variant") :]


def _rate(rate: float | None, baseline: float | None) -> str:
    if rate is None:
        return f"{'-':>9} req/s"
    text = f"{rate:>9.0f} req/s"
    return text + f" (ratio {rate / baseline:.2f})" if baseline else text
