"""Human-readable tables and JSON output."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from bench.fanout import GENERATOR_BUSY, FanoutReport, RoundResult
from bench.memory import MemoryReport

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return "-"
    return "; ".join(f"{kind} x{count}" for kind, count in sorted(errors.items()))


def _share(value: float | None) -> str:
    if value is None:
        return "-"
    flag = " (!)" if value > GENERATOR_BUSY else ""
    return f"{value * 100:.0f}%{flag}"


_HEADER = (
    f"{'N':>6} {'round':>5} {'got/N':>13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
    f"{'gap ms':>7} {'pub ms':>7} {'gen CPU ms':>10} {'gen/window':>10} {'srv CPU ms':>10} "
    f"{'waiting':>8}  errors"
)


def _round_line(r: RoundResult) -> str:
    waiting = "-" if r.waiting_seen is None else str(r.waiting_seen)
    if not r.settled:
        waiting += "?"
    return (
        f"{r.size:>6} {r.round:>5} {f'{r.received}/{r.size}':>13} {_ms(r.p50_ms):>8} "
        f"{_ms(r.p99_ms):>8} {_ms(r.max_ms):>8} {_ms(r.max_gap_ms):>7} {_ms(r.publish_ack_ms):>7} "
        f"{r.gen_cpu_ms:>10.1f} {_share(r.gen_cpu_share):>10} {_ms(r.server_cpu_ms):>10} "
        f"{waiting:>8}  {_errors(r.errors)}"
    )


def fanout_table(report: FanoutReport) -> str:
    """The fan-out results, one line per round and one pooled line per N."""
    pin = ",".join(map(str, report.pin)) if report.pin else "not pinned"
    lines = [
        f"fanout against {report.url} ({report.procs} generator processes, {pin})",
        *(f"warning: {note}" for note in report.fd_notes),
        _HEADER,
    ]
    for size in report.sizes:
        lines += [_round_line(r) for r in size.rounds]
        lines.append(
            f"{size.size:>6} {'all':>5} {f'{size.received}/{size.expected}':>13} "
            f"{_ms(size.p50_ms):>8} {_ms(size.p99_ms):>8} {_ms(size.max_ms):>8}"
        )
    lines.append("")
    for size in report.sizes:
        gen = size.gen_us_per_response
        srv = size.server_us_per_delivery
        reads = size.reads_per_response
        lines.append(
            f"N={size.size}: generator {'-' if gen is None else f'{gen:.1f}'} us CPU per "
            f"response, server {'-' if srv is None else f'{srv:.1f}'} us CPU per delivery, "
            f"{'-' if reads is None else f'{reads:.2f}'} socket reads per response"
        )
    lines += [
        "",
        "latency: publish sent -> each subscriber's response complete",
        "gap ms: longest time with no delivery (a stall: collector pause, ...)",
        "pub ms: publish sent -> its reply complete",
        "gen CPU ms: load generator CPU (user+sys, all workers) from publish to last response;",
        f"gen/window: that CPU over the delivery window, as a share of one core "
        f"((!) above {GENERATOR_BUSY:.0%}: the generator may be the limit)",
        "waiting: the server's waiting_subscribers before publishing (? = target not reached)",
        f"generator total CPU {report.generator_cpu_s:.2f} s (worker processes), "
        f"coordinator {report.coordinator_cpu_s:.2f} s, wall {report.wall_s:.1f} s",
    ]
    return "\n".join(lines)


def memory_table(report: MemoryReport) -> str:
    """The idle-memory results."""
    waiting = "unknown" if report.waiting_seen is None else str(report.waiting_seen)
    drained = "unknown" if report.waiting_after_close is None else str(report.waiting_after_close)
    per = "-" if report.kib_per_waiter is None else f"{report.kib_per_waiter:.2f} KiB"
    lines = [
        f"idle-memory against {report.url}",
        *(f"warning: {note}" for note in report.fd_notes),
        f"waiters requested {report.waiters}, sent {report.sent}, "
        f"server reported {waiting} waiting{'' if report.settled else ' (target not reached)'}",
        f"errors                 {_errors(report.errors)}",
        f"RSS baseline           {report.rss_baseline_kib / 1024:.1f} MiB",
        f"RSS while waiting      {report.rss_waiting_kib / 1024:.1f} MiB",
        f"RSS after disconnect   {report.rss_after_close_kib / 1024:.1f} MiB "
        f"(server reported {drained} waiting)",
        f"per waiting subscriber {per}",
        f"generator total CPU {report.generator_cpu_s:.2f} s, wall {report.wall_s:.1f} s",
    ]
    return "\n".join(lines)


def _environment() -> dict[str, object]:
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    return {
        "python": platform.python_version(),
        "loop": loop,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def result_payload(
    scenario: str, options: dict[str, object], report: DataclassInstance
) -> dict[str, object]:
    """`report`, the options that produced it and the environment, as JSON-ready values."""
    return {
        "scenario": scenario,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        "environment": _environment(),
        **dataclasses.asdict(report),
    }


def write_json(
    path: Path, scenario: str, options: dict[str, object], report: DataclassInstance
) -> None:
    """Write `report`, the options that produced it and the environment as JSON to `path`."""
    payload = result_payload(scenario, options, report)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
