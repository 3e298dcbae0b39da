"""Publish throughput of `longpoll serve` with file persistence off, on, and with fsync:
a fresh server for each run, pinned to one core; the variants take turns round by round,
so that drift over the run spreads over all of them. Ratios are to persistence off."""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import HEADER, LoadReport, notes, run_publish
from bench.servers import serve_variant
from bench.settings import PublishPersist

VARIANTS: dict[str, list[str]] = {
    "off": [],
    "persist": ["--persist", "{file}"],
    "persist+fsync": ["--persist", "{file}", "--fsync"],
}
BUSY = 0.9  # server CPU share of its core above which a run counts as uncontended


def _had_core(run: LoadReport) -> bool:
    return run.server_cpu_share is not None and run.server_cpu_share >= BUSY


@dataclass
class PersistReport:
    """Every run of every variant, and the medians."""

    rounds: int
    runs: dict[str, list[LoadReport]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    file_bytes: dict[str, int] = field(default_factory=dict)

    def median(self, variant: str, busy: bool = False) -> float | None:
        """Median publishes per second of `variant` over the rounds (`busy`: only over
        the runs whose server had its core to itself, see BUSY)."""
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

    def text(self) -> str:
        """Every run, then the medians with their ratio to persistence off."""
        baseline, connections = self.median("off"), self.runs["off"][0].connections
        lines = [
            f"publish with persistence: {connections} connections, {self.rounds} round(s) "
            "per variant, taking turns",
            "",
            "server commands (port chosen by the server):",
            *(f"  {name}: {command}" for name, command in self.commands.items()),
            "",
            "variant" + HEADER[len("variant") :],
        ]
        for name, runs in self.runs.items():
            lines += [run.line(f"{name} #{number}", baseline) for number, run in enumerate(runs, 1)]
        lines += ["", "medians over the rounds (ratio: to persistence off):"]
        cost_baseline = self.median_server_us("off")
        for name in self.runs:
            cost = self.median_server_us(name)
            text = f"  {name:<14} {_rate(self.median(name), baseline)}"
            if cost is not None:
                text += f"   server {cost:.1f} us CPU per publish"
                text += f" (ratio {cost / cost_baseline:.2f})" if cost_baseline else ""
            lines.append(text)
        busy_baseline = self.median("off", busy=True)
        lines += ["", f"medians over the runs whose server used >= {BUSY:.0%} of its core:"]
        for name, runs in self.runs.items():
            kept = sum(1 for r in runs if _had_core(r))
            lines.append(
                f"  {name:<14} {_rate(self.median(name, busy=True), busy_baseline)}"
                f"   ({kept} of {len(runs)} runs)"
            )
        return "\n".join([*lines, *notes("publishes")])


def _rate(rate: float | None, baseline: float | None) -> str:
    if rate is None:
        return f"{'-':>9} req/s"
    text = f"{rate:>9.0f} req/s"
    return text + f" (ratio {rate / baseline:.2f})" if baseline else text


def run_persist(s: PublishPersist) -> PersistReport:
    """Run each variant `s.rounds` times, taking turns; every result."""
    report = PersistReport(rounds=s.rounds)
    workdir = Path(tempfile.mkdtemp(prefix="longpoll-bench-", dir=s.dir))
    try:
        for number in range(s.rounds):
            for name, template in VARIANTS.items():
                data_file = workdir / f"{name}-{number}.jsonl"
                flags = [flag.replace("{file}", str(data_file)) for flag in template]
                if s.flush_period is not None and template:
                    flags += ["--flush-period", str(s.flush_period)]
                with serve_variant(flags, s.server_core, workdir / "serve.log") as served:
                    variant = dataclasses.replace(s, category=f"bench-{name}")
                    result = run_publish(variant, served.server())
                report.runs.setdefault(name, []).append(result)
                report.commands[name] = " ".join(served.command)
                if data_file.exists():
                    report.file_bytes[name] = data_file.stat().st_size
                    data_file.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report
