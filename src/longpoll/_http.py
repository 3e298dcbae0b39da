"""ASGI plumbing: requests from scopes, answers as messages, body reading."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from longpoll._api import (
    BODILESS_STATUSES,
    HttpError,
    Request,
    Response,
    body_too_large,
    declared_too_large,
    response_for,
)
from longpoll.types import Receive, Scope, Send


def scope_path(scope: Scope) -> str:
    """The request's path below the app's mount point (`root_path`)."""
    # Per the ASGI spec, `path` includes the `root_path` of a mounted app.
    path: str = scope["path"]
    return path.removeprefix(scope.get("root_path", ""))


def request_of(scope: Scope) -> Request:
    """The `Request` of an HTTP scope (without its body)."""
    client = scope.get("client")
    return Request(
        scope["method"],
        scope_path(scope),
        scope["query_string"],
        scope["headers"],
        client=None if client is None else (client[0], client[1]),
    )


async def send_response(send: Send, response: Response) -> None:
    """Send a whole response as ASGI messages."""
    status, body, headers = response
    if status not in BODILESS_STATUSES:
        headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_answer(scope: Scope, send: Send, respond: Callable[[Request], Response]) -> None:
    """Send what `respond` answers to the scope's request, or the error it raises."""
    try:
        response = respond(request_of(scope))
    except HttpError as exc:
        response = error_answer(exc)
    await send_response(send, response)


def error_answer(error: Exception) -> Response:
    """The answer to an error of the API or the manager; anything else is raised again."""
    response = response_for(error)
    if response is None:
        raise error
    return response


async def read_body(scope: Scope, receive: Receive, limit: int, time_limit: float) -> bytes | None:
    """Read the whole request body, or None if the client went away.

    Raises `HttpError` (413) when the body exceeds `limit` bytes and (408) when it
    does not arrive within `time_limit` seconds.
    """
    if declared_too_large(request_of(scope).header(b"content-length"), limit):
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
        raise HttpError(408, f"request body did not arrive within {time_limit:g} seconds") from None


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away (`http.disconnect`)."""
    while (await receive())["type"] != "http.disconnect":
        pass
