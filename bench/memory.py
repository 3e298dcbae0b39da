"""Idle memory: server RSS before and while N subscribers wait, per waiter."""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass

from bench.fanout import RoundResult, run_round
from bench.options import RunOptions
from bench.procs import cpu_seconds, split
from bench.server import ServerProcess, read_waiting, wait_until_waiting
from bench.stats import merge_counts
from bench.waiters import CLOSE, Subscribe, Subscribed

SAMPLES = 5


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


def _rss_kib(server: ServerProcess) -> float:
    """Median of a few RSS samples, in KiB."""
    samples = []
    for _ in range(SAMPLES):
        samples.append(server.rss_bytes() / 1024)
        time.sleep(0.1)
    return statistics.median(samples)


def _wait_drained(opts: RunOptions) -> int | None:
    """After closing, give the server time to notice; the waiting count it reports."""
    deadline = time.monotonic() + opts.settle_timeout_s
    seen: int | None = None
    while True:
        if opts.stats is None:
            time.sleep(opts.settle_s)
            return None
        seen = read_waiting(opts.stats, 5.0)
        if seen == 0 or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def run_idle_memory(opts: RunOptions, waiters: int, warmup: int, hold_s: float) -> MemoryReport:
    """Baseline RSS (after a warm-up round), RSS with `waiters` waiting, RSS after closing."""
    if opts.server_pid is None:
        raise ValueError("idle-memory needs --server-pid")
    started = time.monotonic()
    server = ServerProcess(opts.server_pid)
    with opts.workers(max(waiters, warmup)) as pool:
        warm: RoundResult | None = None
        if warmup:
            warm, _ = run_round(pool, opts, warmup, 0, None)
            pool.broadcast(CLOSE)
            pool.gather(30.0)
            _wait_drained(opts)
        baseline = _rss_kib(server)
        pool.send([Subscribe(count) for count in split(waiters, opts.procs)])
        subscribed = [r for r in pool.gather(opts.subscribe_wait_s) if isinstance(r, Subscribed)]
        sent = sum(r.sent for r in subscribed)
        settled = wait_until_waiting(opts.stats, sent, opts.settle_s, opts.settle_timeout_s)
        time.sleep(hold_s)
        holding = _rss_kib(server)
        pool.broadcast(CLOSE)
        pool.gather(30.0)
        waiting_after = _wait_drained(opts)
        after = _rss_kib(server)
        notes = pool.notes
    return MemoryReport(
        url=opts.target.url,
        waiters=waiters,
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
        fd_notes=notes,
        generator_cpu_s=cpu_seconds(resource.RUSAGE_CHILDREN),
        wall_s=time.monotonic() - started,
    )
