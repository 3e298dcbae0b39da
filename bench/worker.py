"""A subscriber worker process: many keep-alive connections, one long poll on each.

The hot path is `Waiter.data_received`: feed the parser, stamp the time when the
response is complete. Validating bodies happens after the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TypeVar, cast

from bench.http import HTTPError, Response, ResponseParser
from bench.messages import (
    Closed,
    Collect,
    Collected,
    Command,
    Exit,
    Failed,
    Hello,
    Reply,
    Subscribe,
    Subscribed,
)
from bench.system import cpu_seconds, pin, raise_fd_limit, run_async

CONNECT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one worker process connects to and how."""

    index: int
    host: str
    port: int
    request: bytes
    max_connections: int
    pin: tuple[int, ...] | None
    connect_concurrency: int
    connect_timeout_s: float
    open_budget_s: float
    max_seconds: float


class Tally:
    """Counts requests still waiting for their response; sets `done` at zero."""

    __slots__ = ("done", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0
        self.done = asyncio.Event()

    def start(self, count: int) -> None:
        """Expect `count` responses."""
        self.outstanding = count
        if count:
            self.done.clear()
        else:
            self.done.set()

    def finished(self) -> None:
        """One response (or failure) arrived."""
        self.outstanding -= 1
        if self.outstanding == 0:
            self.done.set()


class Waiter(asyncio.Protocol):
    """One connection holding at most one outstanding long-poll request."""

    __slots__ = (
        "done_ns",
        "error",
        "parser",
        "pending",
        "reads",
        "response",
        "tally",
        "transport",
    )

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.pending = False
        self.response: Response | None = None
        self.error = ""
        self.done_ns = 0
        self.reads = 0

    @property
    def open(self) -> bool:
        """True while the connection is usable."""
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.pending:
            self.error = self.error or "data with no request outstanding"
            self.close()
            return
        self.reads += 1
        try:
            response = self.parser.feed(data)
        except HTTPError:
            self._fail("malformed response")
            return
        if response is not None:
            self.done_ns = time.monotonic_ns()
            self.response = response
            self.pending = False
            self.tally.finished()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.pending:
            return
        try:
            response = self.parser.feed_eof()
        except HTTPError:
            response = None
        if response is None:
            self._fail("closed before response")
        else:
            self.done_ns = time.monotonic_ns()
            self.response = response
            self.pending = False
            self.tally.finished()

    def send(self, raw: bytes) -> None:
        """Start a new request on this (open) connection."""
        if self.transport is None:
            raise RuntimeError("send on a closed connection")
        self.response = None
        self.error = ""
        self.reads = 0
        self.pending = True
        self.transport.write(raw)

    def abandon(self) -> None:
        """Give up on the outstanding request and drop the connection."""
        self.pending = False
        self.close()

    def close(self) -> None:
        """Abort the connection (no lingering)."""
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, kind: str) -> None:
        self.error = kind
        self.done_ns = time.monotonic_ns()
        self.pending = False
        self.tally.finished()
        self.close()


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


P = TypeVar("P", bound=asyncio.Protocol)


async def open_connections(
    factory: Callable[[], P],
    count: int,
    host: str,
    port: int,
    *,
    concurrency: int,
    timeout_s: float,
    budget_s: float,
    errors: Counter[str],
) -> list[P]:
    """Open up to `count` connections (each tried 3 times, `concurrency` at once).

    Failures are counted in `errors` by kind; the whole batch gets `budget_s` seconds.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def connect_one() -> P | None:
        problem = ""
        for attempt in range(CONNECT_ATTEMPTS):
            async with gate:
                try:
                    _, protocol = await asyncio.wait_for(
                        loop.create_connection(factory, host, port), timeout_s
                    )
                    return protocol
                except (OSError, TimeoutError) as exc:
                    problem = _error_name(exc)
            await asyncio.sleep(0.05 * (attempt + 1))
        errors[f"connect: {problem}"] += 1
        return None

    tasks = [asyncio.ensure_future(connect_one()) for _ in range(count)]
    if not tasks:
        return []
    done, late = await asyncio.wait(tasks, timeout=budget_s)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5.0)
        errors["connect: over the time budget"] += len(late)
    return [p for t in done if (p := t.result()) is not None]


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


class Worker:
    """Serves the coordinator's commands in an event loop."""

    def __init__(self, config: WorkerConfig, pipe: Connection) -> None:
        self.config = config
        self.pipe = pipe
        self.tally = Tally()
        self.waiters: list[Waiter] = []
        self.queue: asyncio.Queue[Command | None] = asyncio.Queue()
        self.cpu_start = 0.0

    async def run(self) -> None:
        """Answer commands until Exit, the pipe closes, or the lifetime runs out."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._on_pipe)
        deadline = loop.time() + self.config.max_seconds
        try:
            while (left := deadline - loop.time()) > 0:
                try:
                    command = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
                if command is None or isinstance(command, Exit):
                    break
                self.pipe.send(await self._handle(command))
        finally:
            loop.remove_reader(self.pipe.fileno())
            await self._close_all()

    def _on_pipe(self) -> None:
        try:
            while self.pipe.poll():
                self.queue.put_nowait(self.pipe.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())
            self.queue.put_nowait(None)

    async def _handle(self, command: Command) -> Reply:
        if isinstance(command, Subscribe):
            return await self._subscribe(command.count)
        if isinstance(command, Collect):
            return await self._collect(command)
        await self._close_all()
        return Closed()

    async def _subscribe(self, count: int) -> Subscribed:
        self.waiters = [w for w in self.waiters if w.open]
        for extra in self.waiters[count:]:
            extra.close()
        del self.waiters[count:]
        errors: Counter[str] = Counter()
        if len(self.waiters) < count:
            self.waiters += await self._open(count - len(self.waiters), errors)
        self.tally.start(len(self.waiters))
        gc.collect()
        gc.disable()  # no collector pauses inside the measured window
        request = self.config.request
        for waiter in self.waiters:
            waiter.send(request)
        self.cpu_start = cpu_seconds()  # count delivery only, not the writes above
        return Subscribed(sent=len(self.waiters), errors=dict(errors))

    async def _open(self, count: int, errors: Counter[str]) -> list[Waiter]:
        config = self.config
        return await open_connections(
            lambda: Waiter(self.tally),
            count,
            config.host,
            config.port,
            concurrency=config.connect_concurrency,
            timeout_s=config.connect_timeout_s,
            budget_s=config.open_budget_s,
            errors=errors,
        )

    async def _collect(self, command: Collect) -> Collected:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tally.done.wait(), command.timeout_s)
        cpu = cpu_seconds() - self.cpu_start
        gc.enable()
        t0 = command.t0_ns
        latencies: list[int] = []
        errors: Counter[str] = Counter()
        last = t0
        reads = 0
        for waiter in self.waiters:
            if waiter.pending:
                errors["no response in time"] += 1
                waiter.abandon()
                continue
            if waiter.error or waiter.response is None:
                errors[waiter.error or "no response"] += 1
                continue
            problem = classify(waiter.response, command.marker)
            if waiter.done_ns < t0:
                problem = f"before publish: {problem or 'events'}"
            if not waiter.response.keep_alive:
                waiter.close()
            if problem:
                errors[problem] += 1
                continue
            latencies.append(waiter.done_ns - t0)
            last = max(last, waiter.done_ns)
            reads += waiter.reads
        return Collected(
            latencies_ns=latencies, errors=dict(errors), cpu_s=cpu, last_ns=last, reads=reads
        )

    async def _close_all(self) -> None:
        gc.enable()
        for waiter in self.waiters:
            waiter.abandon()
        self.waiters = []
        await asyncio.sleep(0.05)


def worker_main(config: WorkerConfig, pipe: Connection) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    pin(config.pin)
    limit = raise_fd_limit(config.max_connections + 64)
    pipe.send(Hello(index=config.index, fd_soft=limit.soft, fd_note=limit.note()))
    try:
        run_async(Worker(config, pipe).run())
    except Exception as exc:  # report, never hang the coordinator
        with contextlib.suppress(OSError):
            pipe.send(Failed(index=config.index, error=f"{type(exc).__name__}: {exc}"))
    finally:
        pipe.close()
