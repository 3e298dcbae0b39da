"""The generator's one kind of client connection, for every scenario, and opening many.

A `Connection` holds at most one request in flight and tells its owner how each one
ended: `answered` with the complete response and the time its last byte arrived, or
`failed`. Owners keep their own tallies (a fan-out round, a closed request loop, a
stream subscriber). A streaming body (server-sent events, say) would be one more mode
of `data_received`: the parser handing each piece of body to the owner as it arrives.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, cast

from bench.http import HTTPError, Response, ResponseParser, Target

CLOSED = "connection closed"
CONNECT_ATTEMPTS = 3


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

    @property
    def open(self) -> bool:
        """True while the connection is usable."""
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, raw: bytes) -> bool:
        """Write a request; False (nothing sent) when the connection is closed."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.pending, self.response, self.reads = True, None, 0
        self.sent_ns = time.monotonic_ns()
        self.transport.write(raw)
        return True

    def data_received(self, data: bytes) -> None:
        if not self.pending:
            self.fail("data with no request outstanding")
            return
        self.reads += 1
        try:
            response = self.parser.feed(data)
        except HTTPError:
            self.fail("malformed response")
            return
        if response is not None:
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
) -> list[Connection]:
    """A connection to `target` for each of `owners` that can have one (each tried 3 times,
    `concurrency` at once, all within 3 timeouts + 30 s); failures counted in `errors`."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def connect(owner: Owner) -> Connection | None:
        problem = ""
        for attempt in range(CONNECT_ATTEMPTS):
            async with gate:
                try:
                    opening = loop.create_connection(
                        lambda: Connection(owner), target.host, target.port
                    )
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
