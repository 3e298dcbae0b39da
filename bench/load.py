"""Closed-loop load, the `publish` and `catchup` scenarios: C keep-alive connections,
each sending one fixed request again as soon as the last is answered, so that C are
always in flight. After a warm-up, answers are counted over a measured window (bounded
in time, and in count by `max_requests`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from bench.conn import CLOSED, Connection, open_connections
from bench.http import (
    BlockingConnection,
    HTTPError,
    Response,
    Server,
    Target,
    fetch,
)
from bench.procs import Channel, Workers, cpu_seconds, split
from bench.progress import Bar
from bench.report import Latency, errors_text, fixed, merge_counts, percent, summarize
from bench.servers import ServerProcess
from bench.settings import Catchup, Load

DRAIN_S = 5.0  # after the window, how long to wait for requests still in flight
EXPECT_WITHIN = 64  # `expect` must appear in this many first bytes of the body


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What one load process does (times are `time.monotonic_ns()` values); a 200 answer
    without `expect` in its first bytes counts as the error `unexpected`."""

    target: Target
    request: bytes
    expect: bytes
    unexpected: str
    connections: int
    start_ns: int
    measure_from_ns: int
    end_ns: int
    max_requests: int


class Counted(NamedTuple):
    """What one load process counted in the window."""

    latencies_ns: list[int]
    errors: dict[str, int]
    cpu_s: float
    connected: int
    late_ms: float


class _Loop:
    """One process's connections, each sending its request again as soon as it is answered."""

    __slots__ = ("active", "config", "count", "done", "errors", "latencies")

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.count = 0  # requests sent, against max_requests
        self.latencies: list[int] = []
        self.errors: Counter[str] = Counter()
        self.active: set[Connection] = set()  # between the first request and the last answer
        self.done = asyncio.Event()

    def send(self, conn: Connection) -> None:
        """Send `conn`'s next request, or stop it if the window or the count is over."""
        config = self.config
        if time.monotonic_ns() >= config.end_ns or self.count >= config.max_requests:
            self._stop(conn)
        elif conn.send(config.request):
            self.count += 1
        else:
            self.failed(conn, CLOSED)

    def answered(self, conn: Connection, response: Response, now_ns: int) -> None:
        config = self.config
        if response.head[9:12] != b"200":
            self.errors[f"HTTP {response.status}"] += 1
        elif config.expect and config.expect not in response.body[:EXPECT_WITHIN]:
            self.errors[config.unexpected] += 1
        elif config.measure_from_ns <= now_ns < config.end_ns:
            self.latencies.append(now_ns - conn.sent_ns)
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


async def _sleep_until(ns: int) -> None:
    await asyncio.sleep(max(0.0, (ns - time.monotonic_ns()) / 1e9))


async def load_job(config: LoadConfig, channel: Channel) -> None:
    """A load process: connect, loop over the window, send what it counted."""
    run = _Loop(config)
    conns = await open_connections([run] * config.connections, config.target, run.errors)
    await _sleep_until(config.start_ns)
    late_ms = max(0.0, (time.monotonic_ns() - config.start_ns) / 1e6)
    gc.collect()
    gc.disable()  # no collector pauses in the window
    run.active = set(conns)
    (run.done.clear if conns else run.done.set)()
    for conn in conns:
        run.send(conn)
    await _sleep_until(config.measure_from_ns)
    cpu_start = cpu_seconds()
    await _sleep_until(config.end_ns)
    cpu = cpu_seconds() - cpu_start
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.done.wait(), DRAIN_S)
    gc.enable()
    for conn in conns:
        conn.close()
    if run.active:
        run.errors["no answer after the window"] += len(run.active)
    channel.send(Counted(run.latencies, dict(run.errors), cpu, len(conns), late_ms))


HEADER = (
    f"{'label':<14} {'req/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
    f"{'srv CPU':>7} {'srv us/req':>10} {'gen CPU':>7}  errors"
)


def notes(what: str) -> list[str]:
    """What a requests/s table's columns mean."""
    return [
        "",
        f"req/s: {what} answered 200 within the measured window, per second",
        "p50/p99/max ms: request sent -> its answer complete",
        "srv CPU: server tree CPU over the window, as a share of one core "
        "(near 100%: the server's core is the limit)",
        "gen CPU: load generator CPU over the window (near 100% per process: it may limit)",
    ]


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

    def line(self, label: str, baseline: float | None = None) -> str:
        """One line of a requests/s table; `ratio` is req/s over `baseline` req/s."""
        latency = self.latency or summarize([])
        ratio = "-" if not baseline else f"{self.requests_per_s / baseline:.2f}"
        errors = errors_text(self.errors)
        if self.connected < self.connections:
            errors += f" (connected {self.connected}/{self.connections})"
        return (
            f"{label:<14} {self.requests_per_s:>9.0f} {ratio:>6} {fixed(latency.p50_ms, 2):>7} "
            f"{fixed(latency.p99_ms, 2):>7} {fixed(latency.max_ms, 2):>7} "
            f"{percent(self.server_cpu_share):>7} {fixed(self.server_us_per_request):>10} "
            f"{percent(self.gen_cpu_share):>7}  {errors}"
        )

    def text(self) -> str:
        """The publish table."""
        title = f"publish against {self.url}: {self.connections} connections"
        return "\n".join([title, HEADER, self.line("publish"), *notes("publishes")])


def run_load(
    s: Load,
    server: Server,
    request: bytes,
    label: str,
    expect: bytes = b"",
    unexpected: str = "unexpected answer",
) -> LoadReport:
    """Send `request` back to back on `s.connections` connections; count what the window
    saw. The first request goes out `s.lead` s after the call (time to fork and connect)."""
    if s.connections < 1 or s.procs < 1 or s.duration <= 0 or s.warmup < 0:
        raise ValueError("connections and procs must be at least 1, duration above 0")
    start = time.monotonic_ns() + int(s.lead * 1e9)
    measure_from = start + int(s.warmup * 1e9)
    end = measure_from + int(s.duration * 1e9)
    each = max(1, s.max_requests // s.processes)
    config = LoadConfig(
        server.target, request, expect, unexpected, 0, start, measure_from, end, each
    )
    configs = [replace(config, connections=n) for n in split(s.connections, s.processes)]
    cpu = ServerProcess(server.pid) if server.pid else None
    began = time.monotonic_ns()
    files = configs[0].connections + 64
    with (
        Workers(load_job, configs, s.pin, files) as workers,
        Bar(label, (end - began) / 1e9) as bar,
    ):
        bar.sleep_until(measure_from, began)
        server_cpu = cpu.cpu_seconds() if cpu else 0.0
        bar.sleep_until(end, began)
        server_cpu = cpu.cpu_seconds() - server_cpu if cpu else 0.0
        timeout = (end - time.monotonic_ns()) / 1e9 + DRAIN_S + 30
        results: list[Counted] = workers.gather(max(1.0, timeout))
    completed = sum(len(r.latencies_ns) for r in results)
    return LoadReport(
        url=server.target.url,
        connections=s.connections,
        procs=s.processes,
        pin=list(s.pin) if s.pin else None,
        warmup_s=s.warmup,
        duration_s=s.duration,
        completed=completed,
        requests_per_s=completed / s.duration,
        latency=summarize(ns for r in results for ns in r.latencies_ns),
        errors=merge_counts(r.errors for r in results),
        connected=sum(r.connected for r in results),
        gen_cpu_share=sum(r.cpu_s for r in results) / s.duration,
        server_cpu_share=server_cpu / s.duration if cpu else None,
        server_us_per_request=server_cpu * 1e6 / completed if cpu and completed else None,
        late_ms=max(r.late_ms for r in results),
    )


def run_publish(s: Load, server: Server) -> LoadReport:
    """Publish back to back; count what the window saw."""
    data: dict[str, object] = {"n": 0} | ({"pad": "x" * s.payload_bytes} if s.payload_bytes else {})
    request = server.publish(s.category, data)
    return run_load(s, server, request, "publish")


@dataclass(slots=True)
class CatchupReport:
    """The closed-loop run, and what one answer carried (probed before the run)."""

    since: str
    query: str
    events_published: int
    events_per_response: int
    response_bytes: int
    load: LoadReport

    @property
    def failed(self) -> bool:
        """True when a request failed or a connection could not be opened."""
        return self.load.failed

    def text(self) -> str:
        """What one answer carries, then the requests/s table."""
        return "\n".join(
            [
                f"catchup: {self.load.connections} connections, GET {self.query}",
                f"{self.events_published} events published first; one answer carries "
                f"{self.events_per_response} events, {self.response_bytes} bytes",
                HEADER,
                self.load.line("catchup"),
                *notes("catch-up requests"),
            ]
        )


def publish_events(s: Catchup, server: Server) -> list[dict[str, Any]]:
    """Publish `s.events` events on one keep-alive connection; the replies, in order."""
    conn = BlockingConnection(server.target, 10.0)
    replies = []
    try:
        for number in range(s.events):
            data = {"n": number} | ({"pad": "x" * s.payload_bytes} if s.payload_bytes else {})
            raw = server.publish(s.category, data)
            response = conn.request(raw)
            if response.status != 200:
                raise HTTPError(f"publish {number} answered HTTP {response.status}")
            replies.append(json.loads(response.body))
            if not response.keep_alive:
                conn.close()
                conn = BlockingConnection(server.target, 10.0)
    finally:
        conn.close()
    return replies


def run_catchup(s: Catchup, server: Server) -> CatchupReport:
    """Publish the events, check one answer, then loop the catch-up request: everything
    buffered (`since_time=-1`), or (`since first`) what follows the first event."""
    if s.events < 1:
        raise ValueError("--events must be at least 1")
    first = publish_events(s, server)[0]
    since_time: int | None = -1
    last_id: str | None = None
    if s.since == "first":
        since_time, last_id = first.get("timestamp"), first.get("id")
        if not isinstance(since_time, int) or not isinstance(last_id, str):
            raise ValueError("--since first needs publish replies with id and timestamp")
    token = server.credentials.subscribe_token(s.category)
    request = server.subscribe(s.category, s.poll_timeout, since_time, last_id, token)
    probe = fetch(server.target, request, s.poll_timeout + 10.0)
    if probe.status != 200:
        raise ValueError(f"the catch-up request was answered HTTP {probe.status}")
    carried = json.loads(probe.body).get("events")
    if not isinstance(carried, list) or not carried:
        raise ValueError("the catch-up request was not answered with events")
    load = run_load(s, server, request, "catchup", b'"events"', "answer without events")
    query = request.split(b" ", 2)[1].decode()
    return CatchupReport(s.since, query, s.events, len(carried), len(probe.body), load)
