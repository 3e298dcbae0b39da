"""What limited each figure of a suite: the server's core, the generator's, or neither, from
the CPU each side used while the figure was measured, and what else took the server's core."""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

from bench.fanout import GENERATOR_BUSY
from bench.persist import BUSY as SERVER_BUSY
from bench.report import STREAMS

CROWDED = 0.1  # share of the server core that other work took above which it is noted
ROUND_TRIPS = "waiting (round trips, scheduling) sets the figure"


class Limit(NamedTuple):
    """One figure's CPU shares (of one core) and what they say limited it."""

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


def limits_of(label: str, scenario: str, body: dict[str, Any]) -> list[Limit]:
    """The limits of one result, over its measured window (fan-out: the publish to the last
    response); none for idle memory, which is not a rate or a latency."""
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
            case = f"{body.get('subscribers')} x {body.get('rate')}/s"
            waits_for = "the fixed publish rate sets the load"
            limit = _limit(label, scenario, case, server, generator, others, waits_for)
            lag = (body.get("generator_lag") or {}).get("p99_ms")
            if lag is None or lag < 1 or generator is None or generator < GENERATOR_BUSY:
                return [limit]
            late = f"; the generator read events up to {lag:.0f} ms late (p99), within the latency"
            return [limit._replace(verdict=limit.verdict + late)]
        case = f"{load.get('connections')} connections"
        return [_limit(label, scenario, case, server, generator, others)]
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
