"""Latency summaries, error counts, and numbers as the tables show them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def percentile(ordered: list[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    """p50 / p99 / max in milliseconds, or None when nothing arrived."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    max_gap_ms: float | None


def summarize(latencies_ns: Iterable[int]) -> Latency:
    """Summarize nanosecond latencies.

    `max_gap_ms` is the longest stretch with no delivery (from the publish to the
    first one, or between two consecutive ones): a stall such as a collector pause.
    """
    ordered = sorted(latencies_ns)
    if not ordered:
        return Latency(0, None, None, None, None)
    gaps = (b - a for a, b in zip([0, *ordered], ordered, strict=False))
    return Latency(
        count=len(ordered),
        p50_ms=percentile(ordered, 50) / 1e6,
        p99_ms=percentile(ordered, 99) / 1e6,
        max_ms=ordered[-1] / 1e6,
        max_gap_ms=max(gaps) / 1e6,
    )


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Add up error counters."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


def errors_text(errors: dict[str, int]) -> str:
    """Error counts as `kind xN; ...`, or '-'."""
    return "; ".join(f"{kind} x{count}" for kind, count in sorted(errors.items())) or "-"


def fixed(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals, or '-'."""
    return "-" if value is None else f"{value:.{digits}f}"
