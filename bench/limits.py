"""What limits a figure: the server's core, the load generator's, or neither.

Server CPU near all of its core means the server core is the limit; generator CPU
high means the generator may be (the server could then do more). Shares are of one
core, over the scenario's measured window (fan-out: publish to the last response).
Whatever else ran on the server's core during the scenario is noted: it took CPU
time the server would otherwise have had.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.fanout import GENERATOR_BUSY
from bench.persist import BUSY as SERVER_BUSY
from bench.summary import STREAMS


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


def verdict(server: float | None, generator: float | None, waits_for: str) -> str:
    """The limit the two CPU shares point at; `waits_for`: what else the figure waits on."""
    server_busy = server is not None and server >= SERVER_BUSY
    generator_busy = generator is not None and generator >= GENERATOR_BUSY
    if server is None:  # e.g. a server the user runs, given without its pid
        busy = "; the generator was busy" if generator_busy else ""
        return f"could not tell (no server CPU figure){busy}"
    if server_busy and generator_busy:
        return "both cores (server and generator)"
    if server_busy:
        return "the server core"
    if generator_busy:
        return "the generator (the server had CPU left)"
    return f"neither core was saturated: {waits_for}"


ROUND_TRIPS = "waiting (round trips, scheduling) sets the figure"
CROWDED = 0.1  # share of the server core that other work took above which it is noted
FIXED_RATE = "the fixed publish rate sets the load"
FSYNC = "waiting for the disk (fsync)"


def _limit(
    label: str,
    scenario: str,
    case: str,
    server: float | None,
    generator: float | None,
    others: float | None,
    waits_for: str = ROUND_TRIPS,
) -> Limit:
    text = verdict(server, generator, waits_for)
    if others is not None and others >= CROWDED:
        text += f"; other work took {others:.0%} of the server core, so the figure is understated"
    return Limit(label, scenario, case, server, generator, others, text)


def _shares(load: dict[str, Any]) -> tuple[float | None, float | None]:
    return load.get("server_cpu_share"), load.get("gen_cpu_share")


def _fanout(label: str, body: dict[str, Any], others: float | None) -> list[Limit]:
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
        limits.append(_limit(label, "fanout", f"N={size['size']:,}", server, generator, others))
    return limits


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def limits_of(label: str, scenario: str, body: dict[str, Any]) -> list[Limit]:
    """The limits of one result (none for idle memory: it is not a rate or a latency)."""
    others = body.get("server_core_others")
    if scenario == "fanout":
        return _fanout(label, body, others)
    if scenario == "publish":
        case = f"{body.get('connections')} connections"
        return [_limit(label, scenario, case, *_shares(body), others)]
    if scenario == "catchup":
        load = body.get("load", {})
        case = f"{load.get('connections')} connections"
        return [_limit(label, scenario, case, *_shares(load), others)]
    if scenario in STREAMS:
        case = f"{body.get('subscribers')} x {body.get('rate')}/s"
        return [_limit(label, scenario, case, *_shares(body), others, FIXED_RATE)]
    if scenario == "publish-persist":
        return [
            _limit(
                label,
                scenario,
                variant,
                _median([load.get("server_cpu_share") for load in loads]),
                _median([load.get("gen_cpu_share") for load in loads]),
                None,
                FSYNC if "fsync" in variant else ROUND_TRIPS,
            )
            for variant, loads in body.get("runs", {}).items()
        ]
    return []
