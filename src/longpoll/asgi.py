"""ASGI handlers for subscribing and publishing, and the app that serves both.

They run under any ASGI server (uvicorn, granian, hypercorn) and mount in any ASGI
framework. `longpoll serve` runs the same API on longpoll's own HTTP/1.1 server
(`longpoll.server`), which needs no task per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator

import orjson

from longpoll._api import (
    OPERATIONS,
    PUBLISH_METHODS,
    READ_METHODS,
    SHUTTING_DOWN,
    SUBSCRIBE_METHODS,
    Endpoint,
    Headers,
    HttpError,
    Request,
    Response,
    Routes,
    batch_body,
    check_method,
    check_seconds,
    json_response,
    parse_publish_body,
    published_body,
)
from longpoll._asgi_stream import serve_stream
from longpoll._http import (
    error_answer,
    read_body,
    request_of,
    scope_path,
    send_answer,
    send_response,
    wait_for_disconnect,
)
from longpoll.access import AccessPolicy, with_headers
from longpoll.backends.base import Repeated
from longpoll.browser import BrowserClientHandler
from longpoll.console import ConsoleHandler
from longpoll.errors import BackendUnavailable, ManagerClosed
from longpoll.event import Event
from longpoll.limits import ClientCounts, ClientLimits
from longpoll.manager import LongpollManager
from longpoll.metrics import Metrics
from longpoll.sse import subscription_of, wants_stream
from longpoll.subscription import Subscription, query_pairs
from longpoll.types import Message, Receive, Scope, Send
from longpoll.waiting import Batch

logger = logging.getLogger("longpoll.asgi")

CATEGORIES_LISTED = 1000
"""The most categories `GET /stats?categories=1` lists."""


class SubscribeHandler:
    """ASGI app answering `GET ?category=...&timeout=...` with events or a timeout.

    A request that accepts `text/event-stream` gets a Server-Sent Events stream
    instead (`longpoll.sse`); with `always_stream`, every request does. A stream
    sends a comment every `stream_heartbeat_seconds` and ends once its client
    falls `max_unsent_bytes` behind.

    Mount it at any path; the manager must be running (see `LongpollApp`).
    `access` decides who may subscribe (default: `AccessPolicy()`, which refuses
    pages of other origins); `client_counts` applies limits per client address.
    """

    def __init__(
        self,
        manager: LongpollManager,
        *,
        access: AccessPolicy | None = None,
        client_counts: ClientCounts | None = None,
        always_stream: bool = False,
        stream_heartbeat_seconds: float = 15.0,
        max_unsent_bytes: int = 1024 * 1024,
    ) -> None:
        check_seconds("stream_heartbeat_seconds", stream_heartbeat_seconds)
        self.manager = manager
        self.access = access if access is not None else AccessPolicy()
        self.client_counts = client_counts
        self.always_stream = always_stream
        self.stream_heartbeat_seconds = stream_heartbeat_seconds
        self.max_unsent_bytes = max_unsent_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self.manager
        options = manager.options
        request = request_of(scope)
        cors = self.access.cors_headers(request, "subscribe")
        watcher: asyncio.Task[None] | None = None

        def watch_disconnect() -> asyncio.Task[None]:
            nonlocal watcher
            watcher = asyncio.create_task(wait_for_disconnect(receive))
            return watcher

        try:
            if request.method == "OPTIONS":
                await send_response(send, self.access.preflight(request, "subscribe"))
                return
            check_method(request.method, *SUBSCRIBE_METHODS)
            stream = self.always_stream or wants_stream(request)
            subscription = subscription_of(request, options, stream)
            deciding = self.access.check(request, "subscribe", subscription.categories)
            if deciding is not None:
                await deciding
            if stream:
                await self._stream(request, subscription, receive, send, cors)
                return
            batch = await self._wait(request, subscription, watch_disconnect)
        except Exception as exc:
            if watcher is not None:
                watcher.cancel()
            await send_response(send, with_headers(error_answer(exc), cors))
            return
        try:
            if watcher is not None and watcher.done():
                return  # the client left: nobody to answer
            await send_response(send, json_response(200, batch_body(batch), cors))
            delivered = watcher is None or not watcher.done()
        finally:
            if watcher is not None:
                watcher.cancel()
        # Only delete-after-first-retrieval needs to know what was delivered.
        if delivered:
            await manager.acknowledge(batch)

    async def _stream(
        self,
        request: Request,
        subscription: Subscription,
        receive: Receive,
        send: Send,
        cors: Headers,
    ) -> None:
        with self._counted_wait(request):
            await serve_stream(
                self.manager,
                subscription,
                receive,
                send,
                extra_headers=cors,
                heartbeat_seconds=self.stream_heartbeat_seconds,
                max_unsent_bytes=self.max_unsent_bytes,
            )

    @contextlib.contextmanager
    def _counted_wait(self, request: Request) -> Iterator[None]:
        """Count the request among its client's waiting ones (limits) meanwhile."""
        counts = self.client_counts
        if counts is None:
            yield
            return
        host = None if request.client is None else request.client[0]
        counts.begin_wait(host)
        try:
            yield
        finally:
            counts.end_wait(host)

    async def _wait(
        self,
        request: Request,
        subscription: Subscription,
        watch_disconnect: Callable[[], asyncio.Task[None]],
    ) -> Batch:
        with self._counted_wait(request):
            return await self.manager.wait_checked(subscription, watch_disconnect)


class PublishHandler:
    """ASGI app publishing `POST {"category": ..., "data": ...}`.

    The body is parsed as JSON whatever its Content-Type. Bodies larger than
    `Options.max_publish_body_bytes` get 413; a body that does not arrive within
    `body_timeout_seconds` gets 408. `access` decides who may publish (default:
    `AccessPolicy()`, which refuses pages of other origins); `client_counts`
    applies limits per client address.
    """

    def __init__(
        self,
        manager: LongpollManager,
        *,
        body_timeout_seconds: float = 30.0,
        access: AccessPolicy | None = None,
        client_counts: ClientCounts | None = None,
    ) -> None:
        check_seconds("body_timeout_seconds", body_timeout_seconds)
        self.manager = manager
        self.body_timeout_seconds = body_timeout_seconds
        self.access = access if access is not None else AccessPolicy()
        self.client_counts = client_counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self.manager
        limit = manager.options.max_publish_body_bytes
        request = request_of(scope)
        cors = self.access.cors_headers(request, "publish")
        try:
            if request.method == "OPTIONS":
                await send_response(send, self.access.preflight(request, "publish"))
                return
            check_method(request.method, *PUBLISH_METHODS)
            body = await read_body(scope, receive, limit, self.body_timeout_seconds)
            if body is None:
                return  # the client went away before sending its whole body
            publication = parse_publish_body(body, request.header(b"idempotency-key"))
            deciding = self.access.check(request, "publish", (publication.category,))
            if self.client_counts is not None and request.client is not None:
                self.client_counts.check_publish(request.client[0])
            if deciding is not None:
                await deciding
            stored = manager.publish_nowait(*publication)
            if not isinstance(stored, Event | Repeated):
                stored = await stored
        except Exception as exc:
            await send_response(send, with_headers(error_answer(exc), cors))
            return
        await send_response(send, json_response(200, published_body(stored), cors))


class LongpollApp:
    """A complete ASGI app: subscribe, publish and stats endpoints plus the lifespan.

    As the whole app of an ASGI server it starts the manager on lifespan startup
    and shuts it down on lifespan shutdown. Set a path to None to leave it out.
    `body_timeout_seconds` bounds how long a publish body may take to arrive.
    `client_path` serves the browser client (`BrowserClientHandler`); a path ending
    in `.js` also has its ES module form at the same path ending in `.mjs`.
    `access` decides who may subscribe and publish (default: `AccessPolicy()`,
    which refuses pages of other origins); `client_limits` bounds what one client
    address may do. A subscribe request that accepts `text/event-stream` gets a
    Server-Sent Events stream, as does every request to `stream_path`; a stream
    sends a comment every `stream_heartbeat_seconds` to keep proxies from
    closing it. `console_path` serves the console page for operators
    (`longpoll.console`), none by default. `longpoll serve` runs this app on
    longpoll's own HTTP/1.1 server.
    """

    def __init__(
        self,
        manager: LongpollManager,
        *,
        subscribe_path: str = "/events",
        stream_path: str | None = None,
        publish_path: str | None = "/publish",
        stats_path: str | None = "/stats",
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        metrics_path: str | None = "/metrics",
        client_path: str | None = "/longpoll.js",
        console_path: str | None = None,
        body_timeout_seconds: float = 30.0,
        stream_heartbeat_seconds: float = 15.0,
        access: AccessPolicy | None = None,
        client_limits: ClientLimits | None = None,
    ) -> None:
        check_seconds("stream_heartbeat_seconds", stream_heartbeat_seconds)
        self.manager = manager
        self.access = access if access is not None else AccessPolicy()
        self.client_counts = (
            ClientCounts(client_limits)
            if client_limits is not None and client_limits.active
            else None
        )
        self.subscribe_path = subscribe_path
        self.stream_path = stream_path
        self.stream_heartbeat_seconds = stream_heartbeat_seconds
        self.publish_path = publish_path
        self.stats_path = stats_path
        self.client_path = client_path
        self.body_timeout_seconds = body_timeout_seconds
        self.routes = Routes(
            {
                Endpoint.SUBSCRIBE: subscribe_path,
                Endpoint.STREAM: stream_path,
                Endpoint.PUBLISH: publish_path,
                Endpoint.STATS: stats_path,
                Endpoint.HEALTH: health_path,
                Endpoint.READY: ready_path,
                Endpoint.METRICS: metrics_path,
                Endpoint.CLIENT: client_path,
                Endpoint.CONSOLE: console_path,
            }
        )
        self._subscribe, self._stream = (
            SubscribeHandler(
                manager,
                access=self.access,
                client_counts=self.client_counts,
                always_stream=always_stream,
                stream_heartbeat_seconds=stream_heartbeat_seconds,
            )
            for always_stream in (False, True)
        )
        self._publish = PublishHandler(
            manager,
            body_timeout_seconds=body_timeout_seconds,
            access=self.access,
            client_counts=self.client_counts,
        )
        self.client = BrowserClientHandler()
        self.client_module = BrowserClientHandler(module=True)
        self.console = None
        if console_path is not None:
            self.console = ConsoleHandler(
                console_path,
                subscribe_path=subscribe_path,
                publish_path=publish_path,
                stats_path=stats_path,
                metrics_path=metrics_path,
            )
        self.metrics = Metrics(manager)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._counted(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an HTTP request, counting its answer in the metrics."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = 0

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        endpoint = None
        try:
            endpoint = self.routes.endpoint(scope_path(scope))
            await self._serve(endpoint, scope, receive, send_counted)
        except HttpError as exc:
            await send_response(send_counted, error_answer(exc))
        finally:
            if status:
                self.metrics.requests.answered(endpoint, status, loop.time() - started)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        if endpoint is Endpoint.SUBSCRIBE:
            await self._subscribe(scope, receive, send)
        elif endpoint is Endpoint.STREAM:
            await self._stream(scope, receive, send)
        elif endpoint is Endpoint.PUBLISH:
            await self._publish(scope, receive, send)
        elif endpoint in OPERATIONS:
            try:
                response = await self.operations_response(endpoint, request_of(scope))
            except Exception as exc:  # as the own server answers it: 401, 405, 503
                response = error_answer(exc)
            await send_response(send, response)
        elif endpoint is Endpoint.CLIENT:
            await send_answer(scope, send, self.client.respond)
        elif endpoint is Endpoint.CONSOLE:
            assert self.console is not None
            await send_answer(scope, send, self.console.respond)
        else:
            await send_answer(scope, send, self.client_module.respond)

    async def operations_response(self, endpoint: Endpoint, request: Request) -> Response:
        """The answer of an endpoint for operators: stats, metrics, health or readiness."""
        self.access.check_operations(request)
        check_method(request.method, *READ_METHODS)
        if endpoint is Endpoint.STATS:
            detailed = _lists_categories(request.query)
            stats = await self.manager.stats()
            stats = dataclasses.replace(
                stats, waiting_subscribers=self.metrics.waiting_everywhere()
            )
            if detailed:
                listed = await self.manager.category_stats(CATEGORIES_LISTED)
                body = {**dataclasses.asdict(stats), "categories_detail": listed}
                return json_response(200, orjson.dumps(body))
            return json_response(200, orjson.dumps(stats))
        if endpoint is Endpoint.METRICS:
            return await self.metrics.response()
        if endpoint is Endpoint.HEALTH:
            return json_response(200, b'{"status":"ok"}')
        try:
            await self.manager.check_ready()
        except (ManagerClosed, BackendUnavailable) as exc:
            reason = SHUTTING_DOWN if isinstance(exc, ManagerClosed) else str(exc)
            return json_response(503, orjson.dumps({"status": "unavailable", "reason": reason}))
        return json_response(200, b'{"status":"ready"}')

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.manager.start()
                    self.metrics.start()
                except Exception as exc:
                    logger.exception("could not start the manager")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.metrics.stop()
                await self.manager.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _lists_categories(query: bytes) -> bool:
    """True if a stats request asks for the categories (`?categories=1`); raises the
    400 error for a value other than 1, true, 0 or false."""
    if b"categories" not in query:
        return False
    asked = False
    for key, value in query_pairs(query.decode("utf-8", "surrogateescape")):
        if key == "categories":
            if value not in ("1", "true", "0", "false"):
                raise HttpError(400, "categories must be 1 (list them) or 0")
            asked = value in ("1", "true")
    return asked
