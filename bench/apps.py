"""ASGI apps for servers other than `longpoll serve` (e.g. granian or uvicorn's own CLI)."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from longpoll import LongpollApp, LongpollManager, Options
from longpoll.server import tune_gc
from longpoll.types import Receive, Scope, Send


def memory_app() -> LongpollApp:
    """`LongpollApp` (memory backend, default options), with `longpoll serve`'s gc settings:
    the ASGI factory of the `asgi-uvicorn` and `granian` variants."""
    app = LongpollApp(LongpollManager(Options()))
    tune_gc()
    return app


def _fixed_events(count: int) -> bytes:
    events = [
        {"timestamp": 1_700_000_000_000 + n, "category": "floor", "data": {"n": n},
         "id": str(uuid.uuid4())}
        for n in range(count)
    ]  # fmt: skip
    return orjson.dumps({"events": events})


_PUBLISHED = b'{"success":true}'
_EVENTS = _fixed_events(100)
_HEADERS = [(b"content-type", b"application/json")]


class FloorApp:
    """The least an ASGI long-poll app can do: no storage, no validation, no timeouts,
    no disconnect watching; served by stock uvicorn it shows what this machine allows a
    Python ASGI server at all.

    A GET with `since_time` gets the same 100 events at once (catch-up); any other
    GET waits for the next POST, whose body is sent to every waiting request as the
    data of one event (one shared future for all); `/stats` counts the waiting.
    """

    def __init__(self) -> None:
        self._next: asyncio.Future[bytes] | None = None
        self._waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            body = await self._publish(receive)
        elif scope["path"] == "/stats":
            body = b'{"waiting_subscribers":%d}' % self._waiting
        elif b"since_time=" in scope["query_string"]:
            body = _EVENTS
        else:
            body = await self._wait()
        headers = [*_HEADERS, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _publish(self, receive: Receive) -> bytes:
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        data = orjson.loads(b"".join(chunks)).get("data")
        event = {"timestamp": 0, "category": "floor", "data": data, "id": str(uuid.uuid4())}
        if self._next is not None:
            self._next.set_result(orjson.dumps({"events": [event]}))
            self._next = None
        return _PUBLISHED

    async def _wait(self) -> bytes:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        future = self._next
        self._waiting += 1
        try:
            return await future
        finally:
            self._waiting -= 1


floor_app = FloorApp()
