"""A subscriber worker process: many keep-alive connections, one long poll on each.

The hot path is `Connection.data_received`: feed the parser, stamp the time when the
response is complete. Validating bodies happens after the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe

from bench.conn import CLOSED, Connection, open_connections
from bench.http import Response, Target
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


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one worker process connects to and how."""

    index: int
    target: Target
    request: bytes
    max_connections: int
    pin: tuple[int, ...] | None
    connect_concurrency: int
    connect_timeout_s: float
    max_seconds: float


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

    def __init__(self, config: WorkerConfig, pipe: Pipe) -> None:
        self.config = config
        self.pipe = pipe
        self.conns: list[Connection] = []
        self.waiting: set[Connection] = set()
        self.done = asyncio.Event()
        self.answers: dict[Connection, tuple[Response, int]] = {}
        self.failures: dict[Connection, str] = {}
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

    def answered(self, conn: Connection, response: Response, now_ns: int) -> None:
        self.answers[conn] = (response, now_ns)
        self._settled(conn)

    def failed(self, conn: Connection, kind: str) -> None:
        self.failures[conn] = kind
        self._settled(conn)

    def _settled(self, conn: Connection) -> None:
        self.waiting.discard(conn)
        if not self.waiting:
            self.done.set()

    async def _subscribe(self, count: int) -> Subscribed:
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
        self.answers.clear()
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

    async def _collect(self, command: Collect) -> Collected:
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
            answer = self.answers.get(conn)
            if conn.pending:
                errors["no response in time"] += 1
                conn.pending = False
                conn.close()
                continue
            if conn in self.failures or answer is None:
                errors[self.failures.get(conn, "no response")] += 1
                continue
            response, done_ns = answer
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

    async def _close_all(self) -> None:
        gc.enable()
        for conn in self.conns:
            conn.pending = False
            conn.close()
        self.conns = []
        await asyncio.sleep(0.05)


def worker_main(config: WorkerConfig, pipe: Pipe) -> None:
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
