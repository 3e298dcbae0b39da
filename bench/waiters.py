"""The worker side of fan-out and idle memory: many keep-alive connections in one
process, one long poll on each, every response timed as its last byte arrives
(`Connection.data_received`); bodies are checked only after the measured window."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
from collections import Counter
from dataclasses import dataclass

from bench.conn import CLOSED, Connection, open_connections
from bench.http import Response, Server, Target
from bench.procs import Channel, Workers, cpu_seconds
from bench.settings import Waiting


@dataclass(frozen=True, slots=True)
class WaiterConfig:
    """What one worker process connects to, and the request it sends on each connection."""

    target: Target
    request: bytes
    connect_concurrency: int
    connect_timeout_s: float


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Hold `count` connections and send one subscribe request on each."""

    count: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """All requests were written; `errors` counts connections that failed to open."""

    sent: int
    errors: dict[str, int]


@dataclass(frozen=True, slots=True)
class Collect:
    """The event was published at `t0_ns`: wait for the responses, then report."""

    t0_ns: int
    timeout_s: float
    marker: str


@dataclass(frozen=True, slots=True)
class Collected:
    """Latencies (ns after t0) of good responses, error counts, CPU in the window, and
    the socket reads that carried those responses."""

    latencies_ns: list[int]
    errors: dict[str, int]
    cpu_s: float
    last_ns: int
    reads: int


CLOSE = "close"  # close every connection (answered with CLOSE)


def classify(response: Response, marker: str) -> str:
    """'' when `response` carries the marked event, else what is wrong with it."""
    if response.status != 200:
        return f"HTTP {response.status}"
    try:
        body = json.loads(response.body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict):
        return "body is not an object"
    events = body.get("events")
    if not isinstance(events, list):
        return "timeout response" if "timeout" in body else "no events key"
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and data.get("marker") == marker:
            return ""
    return "event missing from response"


class Waiters:
    """One process's subscriber connections, and how each one's last request ended."""

    def __init__(self, config: WaiterConfig) -> None:
        self.config = config
        self.conns: list[Connection] = []
        self.waiting: set[Connection] = set()
        self.done = asyncio.Event()
        self.failures: dict[Connection, str] = {}
        self.cpu_start = 0.0

    def answered(self, conn: Connection, response: Response, now_ns: int) -> None:
        self._settled(conn)

    def failed(self, conn: Connection, kind: str) -> None:
        self.failures[conn] = kind
        self._settled(conn)

    def _settled(self, conn: Connection) -> None:
        self.waiting.discard(conn)
        if not self.waiting:
            self.done.set()

    async def subscribe(self, count: int) -> Subscribed:
        self.conns = [conn for conn in self.conns if conn.open]
        for extra in self.conns[count:]:
            extra.close()
        del self.conns[count:]
        errors: Counter[str] = Counter()
        if len(self.conns) < count:
            config = self.config
            self.conns += await open_connections(
                [self] * (count - len(self.conns)),
                config.target,
                errors,
                config.connect_concurrency,
                config.connect_timeout_s,
            )
        self.failures.clear()
        self.waiting = set(self.conns)
        (self.done.clear if self.waiting else self.done.set)()
        gc.collect()
        gc.disable()  # no collector pauses inside the measured window
        request = self.config.request
        for conn in self.conns:
            if not conn.send(request):
                self.failed(conn, CLOSED)
        self.cpu_start = cpu_seconds()  # count delivery only, not the writes above
        return Subscribed(sent=len(self.conns), errors=dict(errors))

    async def collect(self, command: Collect) -> Collected:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), command.timeout_s)
        cpu = cpu_seconds() - self.cpu_start
        gc.enable()
        t0 = command.t0_ns
        latencies: list[int] = []
        errors: Counter[str] = Counter()
        last = t0
        reads = 0
        for conn in self.conns:
            if conn.pending:
                errors["no response in time"] += 1
                conn.pending = False
                conn.close()
                continue
            response, done_ns = conn.response, conn.done_ns
            if conn in self.failures or response is None:
                errors[self.failures.get(conn, "no response")] += 1
                continue
            problem = classify(response, command.marker)
            if done_ns < t0:
                problem = f"before publish: {problem or 'events'}"
            if not response.keep_alive:
                conn.close()
            if problem:
                errors[problem] += 1
                continue
            latencies.append(done_ns - t0)
            last = max(last, done_ns)
            reads += conn.reads
        return Collected(
            latencies_ns=latencies, errors=dict(errors), cpu_s=cpu, last_ns=last, reads=reads
        )

    async def close_all(self) -> None:
        gc.enable()
        for conn in self.conns:
            conn.pending = False
            conn.close()
        self.conns = []
        await asyncio.sleep(0.05)


def waiters(s: Waiting, server: Server, most: int) -> Workers[WaiterConfig]:
    """Worker processes with room for `most` subscribers in all, each sending the subscribe
    request of `s` to `server`."""
    token = server.credentials.subscribe_token(s.category)
    target = server.target
    request = server.subscribe(s.category, s.poll_timeout, token=token)
    config = WaiterConfig(target, request, s.connect_concurrency, s.connect_timeout)
    return Workers(waiters_job, [config] * s.procs, s.pin, math.ceil(most / s.procs) + 64)


async def waiters_job(config: WaiterConfig, channel: Channel) -> None:
    """A worker process: answer Subscribe, Collect and CLOSE until told to stop."""
    waiters = Waiters(config)
    try:
        while (command := await channel.receive()) is not None:
            if isinstance(command, Subscribe):
                channel.send(await waiters.subscribe(command.count))
            elif isinstance(command, Collect):
                channel.send(await waiters.collect(command))
            else:
                await waiters.close_all()
                channel.send(CLOSE)
    finally:
        await waiters.close_all()
