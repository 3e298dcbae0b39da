"""Small ASGI helpers: types, the protocol's response headers, and body reading."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-cache, no-store, must-revalidate"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-content-type-options", b"nosniff"),
]


class BodyError(Exception):
    """A request body that could not be read; `status` is the response to give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def body_too_large(limit: int) -> BodyError:
    """The 413 error for a body over `limit` bytes."""
    return BodyError(413, f"request body is larger than {limit} bytes")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header `name` (lower case), if any."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, time_limit: float) -> bytes | None:
    """Read the whole request body, or None if the client went away.

    Raises `BodyError` (413) when the body exceeds `limit` bytes and (408) when it
    does not arrive within `time_limit` seconds.
    """
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(time_limit):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise body_too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyError(408, f"request body did not arrive within {time_limit:g} seconds") from None
