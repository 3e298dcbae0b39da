"""Closed-loop request load: C keep-alive connections, each sending one fixed request
after another (the `publish` and `catchup` scenarios).

Every connection sends its next request as soon as the previous one is answered, so
C requests are always in flight. After a warm-up, completed requests are counted
over a measured window (bounded in time, and in count by `max_requests`). The
request bytes are built once; the hot path is `Connection.data_received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.conn import CLOSED, Connection, open_connections
from bench.http import Response, Target
from bench.procs import Channel, Workers, cpu_seconds, split
from bench.progress import Bar
from bench.server import ServerPid, ServerProcess
from bench.stats import Latency, merge_counts, summarize

LEAD_S = 1.5  # from the coordinator's start to the first request: time to fork and connect
DRAIN_S = 5.0  # after the window, how long to wait for requests still in flight
EXPECT_WITHIN = 64  # `expect` must appear in this many first bytes of the body


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What one load process does; times are `time.monotonic_ns()` values.

    `expect`, when not empty, must appear in the first bytes of every 200 answer's
    body (e.g. b'"events"'); an answer without it counts as the error `unexpected`.
    """

    index: int
    target: Target
    request: bytes
    expect: bytes
    unexpected: str
    connections: int
    start_ns: int
    measure_from_ns: int
    end_ns: int
    max_requests: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One process's count of answered requests inside the measured window."""

    completed: int
    latencies_ns: list[int]
    errors: dict[str, int]
    cpu_s: float
    connected: int
    late_ms: float


class _Loop:
    """One process's connections, each sending its request again as soon as it is answered."""

    __slots__ = ("active", "config", "count", "done", "errors", "latencies", "sent_ns")

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.count = 0  # requests sent, against max_requests
        self.latencies: list[int] = []
        self.errors: Counter[str] = Counter()
        self.active: set[Connection] = set()  # between the first request and the last answer
        self.sent_ns: dict[Connection, int] = {}
        self.done = asyncio.Event()

    def send(self, conn: Connection) -> None:
        """Send `conn`'s next request, or stop it if the window or the count is over."""
        config, now = self.config, time.monotonic_ns()
        if now >= config.end_ns or self.count >= config.max_requests:
            self._stop(conn)
        elif conn.send(config.request):
            self.count += 1
            self.sent_ns[conn] = now
        else:
            self.failed(conn, CLOSED)

    def answered(self, conn: Connection, response: Response, now_ns: int) -> None:
        config = self.config
        if response.head[9:12] != b"200":
            self.errors[f"HTTP {response.status}"] += 1
        elif config.expect and config.expect not in response.body[:EXPECT_WITHIN]:
            self.errors[config.unexpected] += 1
        elif config.measure_from_ns <= now_ns < config.end_ns:
            self.latencies.append(now_ns - self.sent_ns[conn])
        self.send(conn)

    def failed(self, conn: Connection, kind: str) -> None:
        conn.close()
        self.errors[kind] += 1
        self._stop(conn)

    def _stop(self, conn: Connection) -> None:
        if conn in self.active:
            self.active.discard(conn)
            if not self.active:
                self.done.set()


async def _load_process(config: LoadConfig) -> LoadResult:
    run = _Loop(config)
    conns = await open_connections([run] * config.connections, config.target, run.errors)
    await asyncio.sleep(max(0.0, (config.start_ns - time.monotonic_ns()) / 1e9))
    late_ms = max(0.0, (time.monotonic_ns() - config.start_ns) / 1e6)
    gc.collect()
    gc.disable()  # no collector pauses in the window
    run.active = set(conns)
    (run.done.clear if conns else run.done.set)()
    for conn in conns:
        run.send(conn)
    await asyncio.sleep(max(0.0, (config.measure_from_ns - time.monotonic_ns()) / 1e9))
    cpu_start = cpu_seconds()
    await asyncio.sleep(max(0.0, (config.end_ns - time.monotonic_ns()) / 1e9))
    cpu = cpu_seconds() - cpu_start
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.done.wait(), DRAIN_S)
    gc.enable()
    for conn in conns:
        conn.pending = False
        conn.close()
    if run.active:
        run.errors["no answer after the window"] += len(run.active)
    return LoadResult(
        completed=len(run.latencies),
        latencies_ns=run.latencies,
        errors=dict(run.errors),
        cpu_s=cpu,
        connected=len(conns),
        late_ms=late_ms,
    )


async def load_job(config: LoadConfig, channel: Channel) -> None:
    """A load process: run, then send the result."""
    channel.send(await _load_process(config))


@dataclass(slots=True)
class LoadReport:
    """One closed-loop run against one server."""

    url: str
    connections: int
    procs: int
    pin: list[int] | None
    warmup_s: float
    duration_s: float
    completed: int = 0
    requests_per_s: float = 0.0
    latency: Latency | None = None
    errors: dict[str, int] = field(default_factory=dict)
    connected: int = 0
    gen_cpu_share: float | None = None
    server_cpu_share: float | None = None
    server_us_per_request: float | None = None
    late_ms: float = 0.0

    @property
    def failed(self) -> bool:
        """True when a request failed or a connection could not be opened."""
        return bool(self.errors) or self.connected < self.connections


def run_load(
    target: Target,
    request: bytes,
    *,
    connections: int,
    procs: int,
    cores: tuple[int, ...] | None,
    warmup_s: float,
    duration_s: float,
    max_requests: int,
    server_pid: ServerPid | None = None,
    lead_s: float = LEAD_S,
    expect: bytes = b"",
    unexpected: str = "unexpected answer",
    label: str = "requests",
) -> LoadReport:
    """Send `request` back to back on `connections` connections; count what the window saw.

    The first request goes out `lead_s` after the call (time to fork and connect).
    """
    if connections < 1 or procs < 1 or duration_s <= 0 or warmup_s < 0:
        raise ValueError("connections and procs must be at least 1, duration above 0")
    procs = min(procs, connections)
    start = time.monotonic_ns() + int(lead_s * 1e9)
    measure_from = start + int(warmup_s * 1e9)
    end = measure_from + int(duration_s * 1e9)
    configs = [
        LoadConfig(
            index=index,
            target=target,
            request=request,
            expect=expect,
            unexpected=unexpected,
            connections=count,
            start_ns=start,
            measure_from_ns=measure_from,
            end_ns=end,
            max_requests=max(1, max_requests // procs),
        )
        for index, count in enumerate(split(connections, procs))
    ]
    server = ServerProcess(server_pid) if server_pid else None
    began = time.monotonic_ns()
    files = max(c.connections for c in configs) + 64
    with (
        Workers(load_job, configs, cores, files) as workers,
        Bar(label, (end - began) / 1e9) as bar,
    ):
        bar.sleep_until(measure_from, began)
        server_cpu = server.cpu_seconds() if server is not None else 0.0
        bar.sleep_until(end, began)
        if server is not None:
            server_cpu = server.cpu_seconds() - server_cpu
        timeout = (end - time.monotonic_ns()) / 1e9 + DRAIN_S + 30
        results: list[LoadResult] = workers.gather(max(1.0, timeout))
    latencies = [ns for r in results for ns in r.latencies_ns]
    completed = sum(r.completed for r in results)
    report = LoadReport(
        url=target.url,
        connections=connections,
        procs=procs,
        pin=list(cores) if cores else None,
        warmup_s=warmup_s,
        duration_s=duration_s,
        completed=completed,
        requests_per_s=completed / duration_s,
        latency=summarize(latencies),
        errors=merge_counts(r.errors for r in results),
        connected=sum(r.connected for r in results),
        gen_cpu_share=sum(r.cpu_s for r in results) / duration_s,
        late_ms=max(r.late_ms for r in results),
    )
    if server is not None:
        report.server_cpu_share = server_cpu / duration_s
        report.server_us_per_request = server_cpu * 1e6 / completed if completed else None
    return report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


LOAD_HEADER = (
    f"{'label':<14} {'req/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
    f"{'srv CPU':>7} {'srv us/req':>10} {'gen CPU':>7}  errors"
)


def load_line(label: str, report: LoadReport, baseline: float | None = None) -> str:
    """One line of a requests/s table; `ratio` is req/s over `baseline` req/s."""
    latency = report.latency
    ratio = "-" if not baseline else f"{report.requests_per_s / baseline:.2f}"
    errors = "; ".join(f"{k} x{v}" for k, v in sorted(report.errors.items())) or "-"
    if report.connected < report.connections:
        errors += f" (connected {report.connected}/{report.connections})"
    srv_us = report.server_us_per_request
    return (
        f"{label:<14} {report.requests_per_s:>9.0f} {ratio:>6} "
        f"{_ms(latency.p50_ms if latency else None):>7} "
        f"{_ms(latency.p99_ms if latency else None):>7} "
        f"{_ms(latency.max_ms if latency else None):>7} "
        f"{_pct(report.server_cpu_share):>7} {'-' if srv_us is None else f'{srv_us:.1f}':>10} "
        f"{_pct(report.gen_cpu_share):>7}  {errors}"
    )


def load_notes(what: str = "requests") -> list[str]:
    """What a requests/s table's columns mean."""
    return [
        f"req/s: {what} answered 200 within the measured window, per second",
        "p50/p99/max ms: request sent -> its answer complete",
        "srv CPU: server tree CPU over the window, as a share of one core "
        "(near 100%: the server's core is the limit)",
        "gen CPU: load generator CPU over the window (near 100% per process: it may limit)",
    ]
