"""ASGI handlers for subscribing and publishing, and the app that serves both."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from longpoll._channel import Channel
from longpoll._http import (
    ASGIApp,
    BodyError,
    Receive,
    Scope,
    Send,
    body_too_large,
    read_body,
)
from longpoll.browser import BrowserClientHandler
from longpoll.errors import BackendUnavailable, InvalidRequest, ManagerClosed, PersistenceFailed
from longpoll.event import check_category
from longpoll.manager import Batch, LongpollManager
from longpoll.subscription import parse_subscription

logger = logging.getLogger("longpoll.asgi")

_SHUTTING_DOWN = "server is shutting down"


def encode_batch(batch: Batch) -> bytes:
    """The response body for `batch`, joined from the events' pre-encoded JSON."""
    missed = b',"missed":true' if batch.missed else b""
    if batch.events:
        return b'{"events":[%b]%b}' % (b",".join([event.json for event in batch.events]), missed)
    return b'{"timeout":"no events before timeout","timestamp":%d%b}' % (
        batch.timestamp,
        missed,
    )


class SubscribeHandler:
    """ASGI app answering `GET ?category=...&timeout=...` with events or a timeout.

    Mount it at any path; the manager must be running (see `LongpollApp`).
    """

    def __init__(self, manager: LongpollManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = Channel(scope, receive, send)
        if scope["method"] != "GET":
            await channel.send_error(405, "use GET to subscribe", [(b"allow", b"GET")])
            return
        options = self.manager.options
        try:
            subscription = parse_subscription(
                scope["query_string"],
                options.max_longpoll_timeout_seconds,
                options.max_categories_per_request,
            )
        except InvalidRequest as exc:
            await channel.send_error(400, str(exc))
            return
        try:
            try:
                batch = await self.manager.wait_for_events(subscription, channel.disconnect_future)
            except ManagerClosed:
                await channel.send_error(503, _SHUTTING_DOWN)
                return
            except BackendUnavailable as exc:
                await channel.send_error(503, str(exc))
                return
            if channel.disconnected:
                return
            await channel.send_json(200, encode_batch(batch))
            delivered = not channel.disconnected
        finally:
            channel.close()
        # Only delete-after-first-retrieval needs to know what was delivered.
        if delivered and self.manager.options.delete_event_after_first_retrieval:
            await self.manager.acknowledge(batch)


class PublishHandler:
    """ASGI app publishing `POST {"category": ..., "data": ...}`.

    The body is parsed as JSON whatever its Content-Type. Bodies larger than
    `Options.max_publish_body_bytes` get 413; a body that does not arrive within
    `body_timeout_seconds` gets 408.
    """

    def __init__(self, manager: LongpollManager, *, body_timeout_seconds: float = 30.0) -> None:
        self.manager = manager
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = Channel(scope, receive, send)
        if scope["method"] != "POST":
            await channel.send_error(405, "use POST to publish", [(b"allow", b"POST")])
            return
        limit = self.manager.options.max_publish_body_bytes
        body = channel.received_body()
        try:
            if body is None:
                body = await read_body(scope, receive, limit, self.body_timeout_seconds)
            elif len(body) > limit:
                raise body_too_large(limit)
        except BodyError as exc:
            await channel.send_error(exc.status, exc.message)
            return
        if body is None:
            return  # the client went away before sending its whole body
        try:
            category, data = _parse_publish_body(body)
            event = await self.manager.publish(category, data)
        except InvalidRequest as exc:
            await channel.send_error(400, str(exc))
            return
        except ManagerClosed:
            await channel.send_error(503, _SHUTTING_DOWN)
            return
        except BackendUnavailable as exc:
            await channel.send_error(503, str(exc))
            return
        except PersistenceFailed as exc:
            await channel.send_error(500, str(exc))
            return
        response = {"success": True, "id": str(event.id), "timestamp": event.timestamp}
        await channel.send_json(200, orjson.dumps(response))


def _parse_publish_body(body: bytes) -> tuple[str, Any]:
    if not body.strip():
        raise InvalidRequest("request body is empty: send a JSON object")
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(message, dict):
        raise InvalidRequest("request body must be a JSON object")
    if "category" not in message:
        raise InvalidRequest("category is required")
    category = check_category(message["category"])
    if message.get("data") is None:
        if "data" not in message:
            raise InvalidRequest("data is required")
        raise InvalidRequest("data must not be null")
    return category, message["data"]


class LongpollApp:
    """A complete ASGI app: subscribe, publish and stats endpoints plus the lifespan.

    As the whole app of an ASGI server it starts the manager on lifespan startup
    and shuts it down on lifespan shutdown. Set a path to None to leave it out.
    `body_timeout_seconds` bounds how long a publish body may take to arrive.
    `client_path` serves the browser client (`BrowserClientHandler`); a path ending
    in `.js` also has its ES module form at the same path ending in `.mjs`.
    """

    def __init__(
        self,
        manager: LongpollManager,
        *,
        subscribe_path: str = "/events",
        publish_path: str | None = "/publish",
        stats_path: str | None = "/stats",
        client_path: str | None = "/longpoll.js",
        body_timeout_seconds: float = 30.0,
    ) -> None:
        self.manager = manager
        self.subscribe_path = subscribe_path
        self.publish_path = publish_path
        self.stats_path = stats_path
        self.client_path = client_path
        routes: list[tuple[str | None, ASGIApp]] = [
            (subscribe_path, SubscribeHandler(manager)),
            (publish_path, PublishHandler(manager, body_timeout_seconds=body_timeout_seconds)),
            (stats_path, self._stats),
            (client_path, BrowserClientHandler()),
        ]
        if client_path is not None and client_path.endswith(".js"):
            module_path = client_path.removesuffix(".js") + ".mjs"
            routes.append((module_path, BrowserClientHandler(module=True)))
        self._routes: dict[str, ASGIApp] = {}
        for path, handler in routes:
            if path is None:
                continue
            if path in self._routes:
                raise ValueError(f"two endpoints share the path {path!r}")
            self._routes[path] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # Per the ASGI spec, `path` includes the `root_path` of a mounted app.
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            handler = self._routes.get(path)
            if handler is None:
                await Channel(scope, receive, send).send_error(404, f"no such endpoint: {path}")
            else:
                await handler(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = await self.manager.stats()
        await Channel(scope, receive, send).send_json(200, orjson.dumps(stats))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.manager.start()
                except Exception as exc:
                    logger.exception("could not start the manager")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.manager.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
