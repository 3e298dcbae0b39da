"""The generator's one kind of client connection, for every scenario, and opening many.

A `Connection` holds at most one request in flight and tells its owner how each one
ended: `answered` with the complete response and the time its last byte arrived, or
`failed`. Owners keep their own tallies (a fan-out round, a closed request loop, a
stream subscriber). A request sent with `on_body` whose answer streams (a 200 whose body
runs until its last chunk or the close: server-sent events) hands each piece of its body
to `on_body` as it arrives, with the time it came; `answered` then gets the rest.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from bench.http import HTTPError, Response, ResponseParser, Target

CLOSED = "connection closed"
CONNECT_ATTEMPTS = 3

OnBody = Callable[["Connection", bytes, int], None]  # a piece of a streamed body, and when


class Owner(Protocol):
    """What a connection reports to."""

    def answered(self, conn: Connection, response: Response, now_ns: int) -> None:
        """The response to `conn`'s request is complete (its last byte came at `now_ns`)."""

    def failed(self, conn: Connection, kind: str) -> None:
        """`conn` broke (`kind` says how); its request, if any, gets no response."""


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    __slots__ = (
        "done_ns",
        "on_body",
        "owner",
        "parser",
        "pending",
        "reads",
        "response",
        "sent_ns",
        "transport",
    )

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.pending = False
        self.sent_ns = 0  # when the current request was written
        self.response: Response | None = None  # its response, once complete
        self.done_ns = 0  # when the response's last byte arrived
        self.reads = 0  # socket reads that carried the response
        self.on_body: OnBody | None = None

    @property
    def open(self) -> bool:
        """True while the connection is usable."""
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, raw: bytes, on_body: OnBody | None = None) -> bool:
        """Write a request (its answer's body streamed to `on_body`, if given and it
        streams); False (nothing sent) when the connection is closed."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.pending, self.response, self.reads = True, None, 0
        self.on_body, self.parser.stream = on_body, on_body is not None
        self.sent_ns = time.monotonic_ns()
        self.transport.write(raw)
        return True

    def data_received(self, data: bytes) -> None:
        if not self.pending:
            self.fail("data with no request outstanding")
            return
        self.reads += 1
        parser = self.parser
        if parser.streaming and self.on_body is not None:
            body = parser.chunks(data)  # the common case, whole chunks: no more parsing
            if body is not None:
                self.on_body(self, body, time.monotonic_ns())
                return
        try:
            response = parser.feed(data)
        except HTTPError:
            self.fail("malformed response")
            return
        if parser.streaming and self.on_body is not None:
            if body := parser.take():
                self.on_body(self, body, time.monotonic_ns())
        elif response is not None:
            self.done_ns, self.response, self.pending = time.monotonic_ns(), response, False
            self.owner.answered(self, response, self.done_ns)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.pending:
            return
        self.pending = False
        try:
            response = self.parser.feed_eof()
        except HTTPError:
            response = None
        if response is None:
            self.owner.failed(self, CLOSED)
        else:
            self.done_ns, self.response = time.monotonic_ns(), response
            self.owner.answered(self, response, self.done_ns)

    def fail(self, kind: str) -> None:
        """Drop the connection and report `kind` to the owner."""
        self.pending = False
        self.close()
        self.owner.failed(self, kind)

    def close(self) -> None:
        """Abort the connection (no lingering, no report)."""
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()


class Pipelined(Connection):
    """A connection that writes each request at once, whether the last was answered or
    not (HTTP/1.1 pipelining: the server answers in order). While `answered` runs,
    `sent_ns` is the send time of the request it answers; `failed` comes once for all the
    requests outstanding."""

    __slots__ = ("in_flight",)

    def __init__(self, owner: Owner) -> None:
        super().__init__(owner)
        self.in_flight: deque[int] = deque()  # send times of the requests not answered yet

    def send(self, raw: bytes, on_body: OnBody | None = None) -> bool:
        """Write a request now; False (nothing sent) when the connection is closed."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.in_flight.append(time.monotonic_ns())
        self.pending = True
        self.transport.write(raw)
        return True

    def data_received(self, data: bytes) -> None:
        now, in_flight = time.monotonic_ns(), self.in_flight
        try:
            response = self.parser.feed(data)
            while response is not None:
                if not in_flight:
                    self.fail("data with no request outstanding")
                    return
                self.sent_ns = in_flight.popleft()
                self.pending = bool(in_flight)
                self.owner.answered(self, response, now)
                response = self.parser.feed(b"")
        except HTTPError:
            self.fail("malformed response")


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


async def open_connections(
    owners: Sequence[Owner],
    target: Target,
    errors: Counter[str],
    concurrency: int = 256,
    timeout_s: float = 10.0,
    kind: type[Connection] = Connection,
) -> list[Connection]:
    """A connection (of `kind`) to `target` for each of `owners` that can have one (each
    tried 3 times, `concurrency` at once, all within 3 timeouts + 30 s); failures counted in
    `errors`."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def connect(owner: Owner) -> Connection | None:
        problem = ""
        for attempt in range(CONNECT_ATTEMPTS):
            async with gate:
                try:
                    opening = loop.create_connection(lambda: kind(owner), target.host, target.port)
                    return (await asyncio.wait_for(opening, timeout_s))[1]
                except (OSError, TimeoutError) as exc:
                    problem = _error_name(exc)
            await asyncio.sleep(0.05 * (attempt + 1))
        errors[f"connect: {problem}"] += 1
        return None

    tasks = [asyncio.ensure_future(connect(owner)) for owner in owners]
    if not tasks:
        return []
    done, late = await asyncio.wait(tasks, timeout=3 * timeout_s + 30)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5.0)
        errors["connect: over the time budget"] += len(late)
    return [conn for task in done if (conn := task.result()) is not None]
