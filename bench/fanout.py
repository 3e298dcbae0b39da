"""Fan-out: N subscribers wait on one category, one publish, time to each delivery."""

from __future__ import annotations

import resource
import statistics
import time
import uuid
from dataclasses import dataclass, field

from bench.http import HTTPError
from bench.options import RunOptions
from bench.procs import Workers, cpu_seconds, split
from bench.progress import Bar
from bench.server import ServerProcess, publish, wait_until_waiting
from bench.stats import merge_counts, summarize
from bench.waiters import Collect, Collected, Subscribe, Subscribed, WaiterConfig

GENERATOR_BUSY = 0.8  # generator CPU per core of delivery window above which it may limit


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One round: N subscribe, one publish, every response timed."""

    size: int
    round: int
    sent: int
    received: int
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    max_gap_ms: float | None
    publish_status: int | None
    publish_ack_ms: float | None
    settle_s: float
    waiting_seen: int | None
    settled: bool
    gen_cpu_ms: float
    gen_cpu_share: float | None
    server_cpu_ms: float | None
    reads_per_response: float | None

    @property
    def error_count(self) -> int:
        """Subscribers that did not get the event (including those never connected)."""
        return self.size - self.received


@dataclass(frozen=True, slots=True)
class SizeResult:
    """All rounds for one N, with latencies pooled over the rounds."""

    size: int
    rounds: list[RoundResult]
    received: int
    expected: int
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    gen_us_per_response: float | None
    server_us_per_delivery: float | None
    reads_per_response: float | None


def _per_item_us(total_ms: float | None, items: int) -> float | None:
    return total_ms * 1e3 / items if total_ms is not None and items else None


@dataclass(slots=True)
class FanoutReport:
    """The whole fan-out run."""

    url: str
    procs: int
    pin: list[int] | None
    fd_notes: list[str]
    sizes: list[SizeResult] = field(default_factory=list)
    generator_cpu_s: float = 0.0
    coordinator_cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def failed(self) -> bool:
        """True when any subscriber missed the event."""
        return any(s.received < s.expected for s in self.sizes)


def run_round(
    pool: Workers[WaiterConfig],
    opts: RunOptions,
    size: int,
    number: int,
    server: ServerProcess | None,
) -> tuple[RoundResult, list[int]]:
    """Subscribe `size` waiters, publish once, collect; return the result and latencies."""
    pool.send([Subscribe(count) for count in split(size, opts.procs)])
    subscribed = [r for r in pool.gather(opts.subscribe_wait_s) if isinstance(r, Subscribed)]
    sent = sum(r.sent for r in subscribed)
    settle_s = opts.settle_s if sent else 0.0
    settled = wait_until_waiting(
        opts.stats if sent else None, sent, settle_s, opts.settle_timeout_s
    )
    marker = uuid.uuid4().hex
    data: dict[str, object] = {"marker": marker, "round": number}
    if opts.payload_bytes:
        data["pad"] = "x" * opts.payload_bytes
    server_cpu = server.cpu_seconds() if server else 0.0
    publish_status: int | None = None
    publish_ack_ms: float | None = None
    publish_error = ""
    try:
        published = publish(
            opts.target,
            opts.publish_path,
            opts.category,
            data,
            30.0,
            opts.credentials.publish_token,
        )
        t0, collect_s = published.t0_ns, opts.collect_timeout_s
        publish_status, publish_ack_ms = published.status, published.ack_ms
    except HTTPError as exc:
        publish_error = str(exc)
        t0, collect_s = time.monotonic_ns(), 1.0  # nothing will arrive: release the workers
    pool.broadcast(Collect(t0_ns=t0, timeout_s=collect_s, marker=marker))
    collected = [r for r in pool.gather(collect_s + 30) if isinstance(r, Collected)]
    server_cpu_ms = (server.cpu_seconds() - server_cpu) * 1e3 if server else None
    latencies = [ns for r in collected for ns in r.latencies_ns]
    errors = merge_counts([r.errors for r in subscribed] + [r.errors for r in collected])
    if publish_status is None:
        errors[f"publish failed ({publish_error})"] = 1
    elif publish_status != 200:
        errors[f"publish answered HTTP {publish_status}"] = 1
    gen_cpu_s = sum(r.cpu_s for r in collected)
    window_ns = max((r.last_ns for r in collected), default=t0) - t0
    summary = summarize(latencies)
    result = RoundResult(
        size=size,
        round=number,
        sent=sent,
        received=summary.count,
        errors=errors,
        p50_ms=summary.p50_ms,
        p99_ms=summary.p99_ms,
        max_ms=summary.max_ms,
        max_gap_ms=summary.max_gap_ms,
        publish_status=publish_status,
        publish_ack_ms=publish_ack_ms,
        settle_s=settled.seconds,
        waiting_seen=settled.waiting_seen,
        settled=settled.reached,
        gen_cpu_ms=gen_cpu_s * 1e3,
        gen_cpu_share=gen_cpu_s / (window_ns / 1e9) if window_ns > 0 else None,
        server_cpu_ms=server_cpu_ms,
        reads_per_response=sum(r.reads for r in collected) / summary.count
        if summary.count
        else None,
    )
    return result, latencies


def run_fanout(opts: RunOptions, sizes: list[int], rounds: int) -> FanoutReport:
    """Run `rounds` rounds for each size in `sizes` over one pool of workers."""
    started = time.monotonic()
    server = ServerProcess(opts.server_pid) if opts.server_pid else None
    bar_done = 0
    with (
        opts.workers(max(sizes)) as pool,
        Bar("fanout", len(sizes) * rounds) as bar,
    ):
        report = FanoutReport(
            url=opts.target.url,
            procs=opts.procs,
            pin=list(opts.pin) if opts.pin else None,
            fd_notes=pool.notes,
        )
        for size in sizes:
            results: list[RoundResult] = []
            pooled: list[int] = []
            for number in range(1, rounds + 1):
                bar.update(bar_done, f"fanout N={size} round {number}")
                result, latencies = run_round(pool, opts, size, number, server)
                results.append(result)
                pooled += latencies
                bar_done += 1
            summary = summarize(pooled)
            server_ms = [r.server_cpu_ms for r in results if r.server_cpu_ms is not None]
            reads = [r.reads_per_response for r in results if r.reads_per_response is not None]
            report.sizes.append(
                SizeResult(
                    size=size,
                    rounds=results,
                    received=summary.count,
                    expected=size * rounds,
                    errors=merge_counts(r.errors for r in results),
                    p50_ms=summary.p50_ms,
                    p99_ms=summary.p99_ms,
                    max_ms=summary.max_ms,
                    gen_us_per_response=_per_item_us(
                        sum(r.gen_cpu_ms for r in results), sum(r.sent for r in results)
                    ),
                    server_us_per_delivery=_per_item_us(
                        sum(server_ms) if server_ms else None, summary.count
                    ),
                    reads_per_response=statistics.fmean(reads) if reads else None,
                )
            )
    report.generator_cpu_s = cpu_seconds(resource.RUSAGE_CHILDREN)
    report.coordinator_cpu_s = cpu_seconds()
    report.wall_s = time.monotonic() - started
    return report
