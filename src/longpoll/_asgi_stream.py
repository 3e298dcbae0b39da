"""A Server-Sent Events stream over ASGI (see `longpoll.sse` for what it sends)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from longpoll._api import Headers
from longpoll.manager import LongpollManager
from longpoll.sse import HEARTBEAT, OPENING, STREAM_HEADERS, batch_frames
from longpoll.subscription import Subscription
from longpoll.types import Receive, Send
from longpoll.waiting import Batch, Waiter


class _QueuedStream(Waiter):
    """A stream's waiter: keeps the bytes of each batch until the handler sends them,
    at most `max_unsent_bytes`; past that the stream is `overflowing` and ends."""

    stays = True
    __slots__ = (
        "announce",
        "batches",
        "closing",
        "error",
        "handler",
        "max_unsent_bytes",
        "overflowing",
        "pending",
        "ready",
        "size",
    )

    def __init__(self, categories: tuple[str, ...], announce: bool, max_unsent_bytes: int) -> None:
        super().__init__(categories)
        self.announce = announce
        self.max_unsent_bytes = max_unsent_bytes
        self.overflowing = False
        # The task sending the stream: cancelled once it overflows, as it may be
        # stuck in a send that waits for the client to read.
        self.handler: asyncio.Task[Any] | None = None
        self.pending: list[bytes] = []
        self.batches: list[Batch] = []  # sent once `pending` is: then acknowledged
        self.size = 0
        self.closing = False
        self.error: Exception | None = None
        self.ready = asyncio.Event()

    def complete(self, batch: Batch) -> None:
        if batch.closing:
            self.closing = True
        elif self.overflowing:
            return
        else:
            payload = batch_frames(batch, self.announce)
            self.announce = False
            if payload:
                self.pending.append(payload)
                self.size += len(payload)
                if self.size > self.max_unsent_bytes:
                    self.overflowing = True
                    if self.handler is not None:
                        self.handler.cancel()
            if batch.events:
                self.batches.append(batch)
        self.ready.set()

    def fail(self, error: Exception) -> None:
        self.error = error
        self.ready.set()


async def serve_stream(
    manager: LongpollManager,
    subscription: Subscription,
    receive: Receive,
    send: Send,
    *,
    extra_headers: Headers,
    heartbeat_seconds: float,
    max_unsent_bytes: int,
) -> None:
    """Stream the subscription's events until the client leaves or the manager closes.

    Errors before the stream opens (a backend that cannot read) are raised, for the
    caller to answer; a stream whose client falls `max_unsent_bytes` behind ends.
    """
    announce = subscription.since_time is None
    stream = _QueuedStream(subscription.categories, announce, max_unsent_bytes)
    starting = manager.start_stream(subscription, stream)
    try:
        if starting is not None:
            await starting
        if stream.error is not None:
            raise stream.error
    except BaseException:
        manager.forget(stream)
        raise
    watcher = asyncio.create_task(_wait_for_disconnect(receive, stream))
    stream.handler = asyncio.current_task()
    try:
        headers = [*STREAM_HEADERS, *extra_headers]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await _send_body(send, OPENING)
        await _send_events(manager, stream, send, watcher, heartbeat_seconds)
    except asyncio.CancelledError:
        if not stream.overflowing:
            raise
        # The client does not read: the response ends unfinished, which makes the
        # server close the connection.
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
    finally:
        stream.handler = None
        manager.forget(stream)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _send_events(
    manager: LongpollManager,
    stream: _QueuedStream,
    send: Send,
    watcher: asyncio.Task[None],
    heartbeat_seconds: float,
) -> None:
    """Send the stream's events and heartbeats until it ends or its client leaves."""
    while not watcher.done():
        if stream.pending:
            payload = b"".join(stream.pending)
            batches = stream.batches
            stream.pending, stream.batches, stream.size = [], [], 0
            await _send_body(send, payload)
            for batch in batches:
                await manager.acknowledge(batch)
            continue
        if stream.closing or stream.error is not None:
            break
        stream.ready.clear()
        try:
            async with asyncio.timeout(heartbeat_seconds):
                await stream.ready.wait()
        except TimeoutError:
            await _send_body(send, HEARTBEAT)
    if not watcher.done():
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_body(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _wait_for_disconnect(receive: Receive, stream: _QueuedStream) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.ready.set()
