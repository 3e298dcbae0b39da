"""One request's way back to its client: responses, and noticing that the client left.

Any ASGI server works through the portable path: responses are ASGI messages and
a task reads `receive()` until it reports `http.disconnect`. A server built for
longpoll (see `longpoll.server`) puts `ServerHooks` in the scope's extensions
instead: a response is then written in one go, and a lost connection is reported
without a task per waiting request.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import orjson

from longpoll._http import JSON_HEADERS, Receive, Scope, Send

HOOKS_EXTENSION = "longpoll.server_hooks"

Headers = Sequence[tuple[bytes, bytes]]

_JSON_HEAD = b"".join(b"%b: %b\r\n" % header for header in JSON_HEADERS)


class ServerHooks(ABC):
    """What a server built for longpoll offers each request."""

    @property
    @abstractmethod
    def disconnected(self) -> bool:
        """True once the client's connection is lost."""

    @abstractmethod
    def disconnect_future(self) -> asyncio.Future[None]:
        """A future done once the client's connection is lost."""

    @abstractmethod
    def respond(self, status: int, head: bytes, body: bytes) -> None:
        """Write a whole response; `head` holds header lines, each ending in CRLF."""

    @abstractmethod
    def received_body(self) -> bytes | None:
        """The whole request body if it has already arrived, else None."""


class Channel:
    """Sends the JSON response of one request and tells whether its client left."""

    __slots__ = ("_hooks", "_receive", "_send", "_watcher")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions") or {}
        self._hooks: ServerHooks | None = extensions.get(HOOKS_EXTENSION)
        self._receive = receive
        self._send = send
        self._watcher: asyncio.Task[None] | None = None

    async def send_json(self, status: int, body: bytes, extra_headers: Headers = ()) -> None:
        """Send a complete response whose JSON body is already encoded."""
        if self._hooks is not None:
            head = _JSON_HEAD + b"".join(b"%b: %b\r\n" % header for header in extra_headers)
            self._hooks.respond(status, head, body)
            return
        headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), *extra_headers]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def send_error(self, status: int, message: str, extra_headers: Headers = ()) -> None:
        """Send `{"error": message}` with `status`."""
        await self.send_json(status, orjson.dumps({"error": message}), extra_headers)

    def received_body(self) -> bytes | None:
        """The whole request body if the server already holds it, else None (then
        read it from `receive`)."""
        return self._hooks.received_body() if self._hooks is not None else None

    def disconnect_future(self) -> asyncio.Future[Any]:
        """A future done once the client has gone away (watching starts at the first call)."""
        if self._hooks is not None:
            return self._hooks.disconnect_future()
        if self._watcher is None:
            self._watcher = asyncio.create_task(_wait_for_disconnect(self._receive))
        return self._watcher

    @property
    def disconnected(self) -> bool:
        """True if the client is known to have gone away."""
        if self._hooks is not None:
            return self._hooks.disconnected
        watcher = self._watcher
        return watcher is not None and watcher.done() and not watcher.cancelled()

    def close(self) -> None:
        """Stop watching for a disconnect."""
        if self._watcher is not None:
            self._watcher.cancel()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
