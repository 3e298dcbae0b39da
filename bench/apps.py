"""ASGI apps for servers other than `longpoll serve` (e.g. granian or uvicorn's own CLI)."""

from __future__ import annotations

import gc
import uuid

import orjson

from longpoll import LongpollApp, LongpollManager, Options
from longpoll._http import Receive, Scope, Send


def memory_app() -> LongpollApp:
    """The app `longpoll serve` runs (memory backend, default options), with its gc settings."""
    app = LongpollApp(LongpollManager(Options()))
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return app


def _fixed_events(count: int) -> bytes:
    events = [
        {"timestamp": 1_700_000_000_000 + n, "category": "floor", "data": {"n": n},
         "id": str(uuid.uuid4())}
        for n in range(count)
    ]  # fmt: skip
    return orjson.dumps({"events": events})


_PUBLISHED = b'{"success":true}'
_STATS = b'{"waiting_subscribers":0}'
_EVENTS = _fixed_events(100)
_HEADERS = [(b"content-type", b"application/json")]


async def floor_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The least an ASGI app can do for publish and catch-up: no storage, no validation.

    A POST is read and answered `{"success":true}`; a GET of `/stats` reports no
    waiting subscribers; any other GET gets the same 100 events at once. Served by
    stock uvicorn it shows what this machine allows a Python ASGI server at all.
    """
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        body = _PUBLISHED
    else:
        body = _STATS if scope["path"] == "/stats" else _EVENTS
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})
