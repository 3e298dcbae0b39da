"""Fan-out and idle memory: N subscribers wait on one category, each on a keep-alive
connection of its own; then one publish and the time to each delivery (fan-out), or
the server's memory while they wait (idle memory)."""

from __future__ import annotations

import resource
import statistics
import time
import uuid
from dataclasses import dataclass, field

from bench.http import HTTPError, Server
from bench.procs import Workers, cpu_seconds, split
from bench.progress import Bar
from bench.report import errors_text, fixed, merge_counts, summarize
from bench.servers import ServerProcess, publish, read_waiting, wait_until_waiting
from bench.settings import Fanout, IdleMemory, Waiting
from bench.waiters import CLOSE, Collect, Collected, Subscribe, Subscribed, WaiterConfig, waiters

GENERATOR_BUSY = 0.8  # generator CPU per core of delivery window above which it may limit
SAMPLES = 5  # RSS samples, 0.1 s apart, whose median is taken


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

    def text(self) -> str:
        """One line per round and one pooled line per N, then what the columns mean."""
        pin = ",".join(map(str, self.pin)) if self.pin else "not pinned"
        lines = [
            f"fanout against {self.url} ({self.procs} generator processes, {pin})",
            *(f"warning: {note}" for note in self.fd_notes),
            f"{'N':>6} {'round':>5} {'got/N':>13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'gap ms':>7} {'pub ms':>7} {'gen CPU ms':>10} {'gen/window':>10} "
            f"{'srv CPU ms':>10} {'waiting':>8}  errors",
        ]
        for size in self.sizes:
            for r in size.rounds:
                waiting = ("-" if r.waiting_seen is None else str(r.waiting_seen)) + (
                    "" if r.settled else "?"
                )
                share = "-" if r.gen_cpu_share is None else f"{r.gen_cpu_share * 100:.0f}%"
                share += " (!)" if (r.gen_cpu_share or 0) > GENERATOR_BUSY else ""
                lines.append(
                    f"{r.size:>6} {r.round:>5} {f'{r.received}/{r.size}':>13} {fixed(r.p50_ms):>8} "
                    f"{fixed(r.p99_ms):>8} {fixed(r.max_ms):>8} {fixed(r.max_gap_ms):>7} "
                    f"{fixed(r.publish_ack_ms):>7} {r.gen_cpu_ms:>10.1f} {share:>10} "
                    f"{fixed(r.server_cpu_ms):>10} {waiting:>8}  {errors_text(r.errors)}"
                )
            lines.append(
                f"{size.size:>6} {'all':>5} {f'{size.received}/{size.expected}':>13} "
                f"{fixed(size.p50_ms):>8} {fixed(size.p99_ms):>8} {fixed(size.max_ms):>8}"
            )
        lines.append("")
        for size in self.sizes:
            lines.append(
                f"N={size.size}: generator {fixed(size.gen_us_per_response)} us CPU per response, "
                f"server {fixed(size.server_us_per_delivery)} us CPU per delivery, "
                f"{fixed(size.reads_per_response, 2)} socket reads per response"
            )
        return "\n".join(
            [
                *lines,
                "",
                "latency: publish sent -> each subscriber's response complete",
                "gap ms: longest time with no delivery (a stall: collector pause, ...)",
                "pub ms: publish sent -> its reply complete",
                "gen CPU ms: load generator CPU (user+sys, all workers) from publish to last "
                "response;",
                f"gen/window: that CPU over the delivery window, as a share of one core "
                f"((!) above {GENERATOR_BUSY:.0%}: the generator may be the limit)",
                "waiting: the server's waiting_subscribers before publishing "
                "(? = target not reached)",
                f"generator total CPU {self.generator_cpu_s:.2f} s (worker processes), "
                f"coordinator {self.coordinator_cpu_s:.2f} s, wall {self.wall_s:.1f} s",
            ]
        )


def _subscribe(workers: Workers[WaiterConfig], s: Waiting, count: int) -> list[Subscribed]:
    """`count` subscribers, spread over the workers, each with a request sent."""
    workers.send([Subscribe(n) for n in split(count, s.procs)])
    return workers.gather(3 * s.connect_timeout + 45)


def _round(
    workers: Workers[WaiterConfig],
    s: Waiting,
    server: Server,
    size: int,
    number: int,
    cpu: ServerProcess | None,
) -> tuple[RoundResult, list[int]]:
    """Subscribe `size` waiters, publish once, collect; the result and the latencies."""
    subscribed = _subscribe(workers, s, size)
    sent = sum(r.sent for r in subscribed)
    settle = wait_until_waiting(
        server.stats if sent else None, sent, s.settle if sent else 0.0, s.settle_timeout
    )
    marker = uuid.uuid4().hex
    data: dict[str, object] = {"marker": marker, "round": number}
    if s.payload_bytes:
        data["pad"] = "x" * s.payload_bytes
    cpu_before = cpu.cpu_seconds() if cpu else 0.0
    errors: dict[str, int] = {}
    status: int | None = None
    ack_ms: float | None = None
    try:
        published = publish(server, s.category, data, 30.0)
        t0, collect_s = published.t0_ns, s.collect_timeout
        status, ack_ms = published.status, published.ack_ms
        if status != 200:
            errors[f"publish answered HTTP {status}"] = 1
    except HTTPError as exc:
        errors[f"publish failed ({exc})"] = 1
        t0, collect_s = time.monotonic_ns(), 1.0  # nothing will arrive: release the workers
    workers.broadcast(Collect(t0_ns=t0, timeout_s=collect_s, marker=marker))
    collected: list[Collected] = workers.gather(collect_s + 30)
    server_cpu_ms = (cpu.cpu_seconds() - cpu_before) * 1e3 if cpu else None
    latencies = [ns for r in collected for ns in r.latencies_ns]
    gen_cpu_s = sum(r.cpu_s for r in collected)
    window_ns = max((r.last_ns for r in collected), default=t0) - t0
    summary = summarize(latencies)
    result = RoundResult(
        size=size,
        round=number,
        sent=sent,
        received=summary.count,
        errors=merge_counts(
            [*(r.errors for r in subscribed), *(r.errors for r in collected), errors]
        ),
        p50_ms=summary.p50_ms,
        p99_ms=summary.p99_ms,
        max_ms=summary.max_ms,
        max_gap_ms=summary.max_gap_ms,
        publish_status=status,
        publish_ack_ms=ack_ms,
        settle_s=settle.seconds,
        waiting_seen=settle.waiting_seen,
        settled=settle.reached,
        gen_cpu_ms=gen_cpu_s * 1e3,
        gen_cpu_share=gen_cpu_s / (window_ns / 1e9) if window_ns > 0 else None,
        server_cpu_ms=server_cpu_ms,
        reads_per_response=_per(sum(r.reads for r in collected), summary.count),
    )
    return result, latencies


def _per(total: float | None, items: int, scale: float = 1.0) -> float | None:
    return total * scale / items if total is not None and items else None


def run_fanout(s: Fanout, server: Server) -> FanoutReport:
    """`rounds` rounds for each size, over one set of worker processes."""
    started = time.monotonic()
    cpu = ServerProcess(server.pid) if server.pid else None
    done = 0
    with waiters(s, server, max(s.sizes)) as workers, Bar("fanout", len(s.sizes) * s.rounds) as bar:
        pin = list(s.pin) if s.pin else None
        report = FanoutReport(server.target.url, s.procs, pin, workers.notes)
        for size in s.sizes:
            results: list[RoundResult] = []
            pooled: list[int] = []
            for number in range(1, s.rounds + 1):
                bar.update(done, f"fanout N={size} round {number}")
                result, latencies = _round(workers, s, server, size, number, cpu)
                results.append(result)
                pooled += latencies
                done += 1
            summary = summarize(pooled)
            server_ms = [r.server_cpu_ms for r in results if r.server_cpu_ms is not None]
            reads = [r.reads_per_response for r in results if r.reads_per_response is not None]
            gen_ms = sum(r.gen_cpu_ms for r in results)
            report.sizes.append(
                SizeResult(
                    size=size,
                    rounds=results,
                    received=summary.count,
                    expected=size * s.rounds,
                    errors=merge_counts(r.errors for r in results),
                    p50_ms=summary.p50_ms,
                    p99_ms=summary.p99_ms,
                    max_ms=summary.max_ms,
                    gen_us_per_response=_per(gen_ms, sum(r.sent for r in results), 1e3),
                    server_us_per_delivery=_per(
                        sum(server_ms) if server_ms else None, summary.count, 1e3
                    ),
                    reads_per_response=statistics.fmean(reads) if reads else None,
                )
            )
    report.generator_cpu_s = cpu_seconds(resource.RUSAGE_CHILDREN)
    report.coordinator_cpu_s = cpu_seconds()
    report.wall_s = time.monotonic() - started
    return report


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """RSS of the server tree at three moments, and the cost of one waiter."""

    url: str
    waiters: int
    sent: int
    errors: dict[str, int]
    waiting_seen: int | None
    settled: bool
    warmup: RoundResult | None
    rss_baseline_kib: float
    rss_waiting_kib: float
    rss_after_close_kib: float
    kib_per_waiter: float | None
    waiting_after_close: int | None
    fd_notes: list[str]
    generator_cpu_s: float
    wall_s: float

    @property
    def failed(self) -> bool:
        """True when a subscriber could not wait."""
        return bool(self.errors) or self.sent < self.waiters

    def text(self) -> str:
        """The three readings and the cost per waiter."""
        waiting = "unknown" if self.waiting_seen is None else str(self.waiting_seen)
        drained = "unknown" if self.waiting_after_close is None else self.waiting_after_close
        per = "-" if self.kib_per_waiter is None else f"{self.kib_per_waiter:.2f} KiB"
        reached = "" if self.settled else " (target not reached)"
        return "\n".join(
            [
                f"idle-memory against {self.url}",
                *(f"warning: {note}" for note in self.fd_notes),
                f"waiters requested {self.waiters}, sent {self.sent}, "
                f"server reported {waiting} waiting{reached}",
                f"errors                 {errors_text(self.errors)}",
                f"RSS baseline           {self.rss_baseline_kib / 1024:.1f} MiB",
                f"RSS while waiting      {self.rss_waiting_kib / 1024:.1f} MiB",
                f"RSS after disconnect   {self.rss_after_close_kib / 1024:.1f} MiB "
                f"(server reported {drained} waiting)",
                f"per waiting subscriber {per}",
                f"generator total CPU {self.generator_cpu_s:.2f} s, wall {self.wall_s:.1f} s",
            ]
        )


def _rss_kib(server: ServerProcess) -> float:
    """Median of a few RSS samples, in KiB."""
    samples = []
    for _ in range(SAMPLES):
        samples.append(server.rss_bytes() / 1024)
        time.sleep(0.1)
    return statistics.median(samples)


def _close(workers: Workers[WaiterConfig], s: Waiting, server: Server) -> int | None:
    """Close every connection; once the server has noticed, the waiting count it reports."""
    workers.broadcast(CLOSE)
    workers.gather(30.0)
    if server.stats is None:
        time.sleep(s.settle)
        return None
    deadline = time.monotonic() + s.settle_timeout
    while (seen := read_waiting(server.stats, 5.0)) != 0 and time.monotonic() <= deadline:
        time.sleep(0.1)
    return seen


def run_idle_memory(s: IdleMemory, server: Server) -> MemoryReport:
    """Baseline RSS (after a warm-up round), RSS with the waiters waiting, RSS after."""
    if server.pid is None:
        raise ValueError("idle-memory needs --server-pid")
    started = time.monotonic()
    rss = ServerProcess(server.pid)
    with waiters(s, server, max(s.waiters, s.warmup)) as workers:
        warm: RoundResult | None = None
        if s.warmup:
            warm = _round(workers, s, server, s.warmup, 0, None)[0]
            _close(workers, s, server)
        baseline = _rss_kib(rss)
        subscribed = _subscribe(workers, s, s.waiters)
        sent = sum(r.sent for r in subscribed)
        settled = wait_until_waiting(server.stats, sent, s.settle, s.settle_timeout)
        time.sleep(s.hold)
        holding = _rss_kib(rss)
        waiting_after = _close(workers, s, server)
        after = _rss_kib(rss)
    return MemoryReport(
        url=server.target.url,
        waiters=s.waiters,
        sent=sent,
        errors=merge_counts(r.errors for r in subscribed),
        waiting_seen=settled.waiting_seen,
        settled=settled.reached,
        warmup=warm,
        rss_baseline_kib=baseline,
        rss_waiting_kib=holding,
        rss_after_close_kib=after,
        kib_per_waiter=(holding - baseline) / sent if sent else None,
        waiting_after_close=waiting_after,
        fd_notes=workers.notes,
        generator_cpu_s=cpu_seconds(resource.RUSAGE_CHILDREN),
        wall_s=time.monotonic() - started,
    )
