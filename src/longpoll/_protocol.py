"""One HTTP/1.1 connection of `longpoll serve`: an `asyncio.Protocol` over httptools.

No task, future or scope per request: a request is parsed in `data_received`,
answered inside the parser's callback when it can be (a read from the buffer, a
publish the backend stores at once), or becomes a small waiter that the fan-out
answers with one `transport.write`. Only work a backend must wait for (Redis,
an fsync) runs in a task of its own.

Requests are answered in order; those pipelined behind a pending answer queue up
(reading pauses past a few), and reading goes on meanwhile, so a client that
leaves while its subscribe waits is noticed at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import httptools

from longpoll._api import (
    BODILESS_STATUSES,
    JSON_HEADERS,
    OPERATIONS,
    PUBLISH_METHODS,
    SHUTTING_DOWN,
    SUBSCRIBE_METHODS,
    Endpoint,
    Headers,
    HttpError,
    Publication,
    Request,
    Response,
    batch_body,
    body_too_large,
    check_method,
    declared_too_large,
    error_response,
    parse_publish_body,
    published_body,
    response_for,
)
from longpoll.backends.base import Repeated, Stored
from longpoll.event import Event
from longpoll.sse import (
    HEARTBEAT,
    OPENING,
    STREAM_HEADERS,
    batch_frames,
    subscription_of,
    wants_stream,
)
from longpoll.subscription import Subscription
from longpoll.waiting import Batch, Waiter

if TYPE_CHECKING:
    from longpoll.access import AccessPolicy, Action
    from longpoll.asgi import LongpollApp
    from longpoll.manager import LongpollManager
    from longpoll.server import HttpServer

logger = logging.getLogger("longpoll.server")
access_logger = logging.getLogger("longpoll.access")

# Beyond this many bytes a chunk is fed to the parser in pieces while a request
# head is being read, so that the head limits hold within one large chunk.
_PIECE = 4096
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LINGER_SECONDS = 2.0
# Module names for the members: an enum member looked up on its class costs a call.
_SUBSCRIBE, _PUBLISH, _CLIENT = Endpoint.SUBSCRIBE, Endpoint.PUBLISH, Endpoint.CLIENT
_STREAM = Endpoint.STREAM
_METHODS = {"subscribe": SUBSCRIBE_METHODS, "publish": PUBLISH_METHODS}
_JSON_HEAD = b"".join(b"%b: %b\r\n" % header for header in JSON_HEADERS)


@functools.cache
def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %b\r\n" % (status, HTTPStatus(status).phrase.encode("ascii"))


class _DateLine:
    """The `date` header line, made once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def get(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = b"date: %b\r\n" % formatdate(second, usegmt=True).encode("ascii")
        return self._line


DATE_LINE = _DateLine()


class _Subscriber(Waiter):
    """A subscribe request waiting on a connection, answered by the fan-out."""

    __slots__ = ("connection",)

    def __init__(self, categories: tuple[str, ...], connection: HttpConnection) -> None:
        super().__init__(categories)
        self.connection = connection

    def complete(self, batch: Batch) -> None:
        self.connection.answer_batch(self, batch)

    def fail(self, error: Exception) -> None:
        self.connection.answer_error(self, error)


class _Stream(Waiter):
    """A subscriber holding a Server-Sent Events stream on a connection."""

    stays = True
    __slots__ = ("announce", "connection", "opened")

    def __init__(
        self, categories: tuple[str, ...], connection: HttpConnection, announce: bool
    ) -> None:
        super().__init__(categories)
        self.connection = connection
        self.announce = announce  # it started without a position: send the one it gets
        self.opened = False  # the response head is written

    def complete(self, batch: Batch) -> None:
        self.connection.stream_batch(self, batch)

    def fail(self, error: Exception) -> None:
        self.connection.stream_failed(self, error)


class HttpConnection(asyncio.Protocol):
    """Serves the requests of one client connection (see the module docstring)."""

    __slots__ = (
        "_authorization",
        "_body",
        "_body_size",
        "_busy",
        "_closed",
        "_deadline",
        "_due",
        "_endpoint",
        "_extra",
        "_head_bytes",
        "_head_only",
        "_header_bytes",
        "_headers",
        "_host",
        "_in_head",
        "_keep_alive",
        "_logged",
        "_origin",
        "_parser",
        "_paused",
        "_pending_timeout",
        "_queue",
        "_request_keep_alive",
        "_server",
        "_started",
        "_streaming",
        "_tick",
        "_transport",
        "_url",
        "_waiter",
        "_waiting_counted",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # Of the request being read: its Origin and Authorization headers.
        self._origin: bytes | None = None
        self._authorization: bytes | None = None
        self._head_bytes = 0  # bytes fed while a head is read (checked in pieces)
        self._header_bytes = 0  # bytes of the header lines parsed
        self._in_head = False
        self._body: list[bytes] | None = None
        self._body_size = 0
        self._request_keep_alive = True
        # The request being answered: whether to keep the connection, and HEAD.
        self._busy = False
        self._keep_alive = True
        self._head_only = False
        self._extra: Headers = ()  # headers the policy adds to this answer (CORS)
        self._endpoint: Endpoint | None = None  # of the request being answered, for metrics
        # When the request being answered began to wait (time.monotonic), or 0 while
        # it is answered at once: such answers count as taking no time in the metrics.
        self._started = 0.0
        self._waiter: _Subscriber | _Stream | None = None
        # A stream is open: the connection serves it alone until it ends (chunked
        # for HTTP/1.1, else until the connection closes).
        self._streaming: bool | None = None
        self._waiting_counted = False  # the waiter counts among its client's (limits)
        # With the access log: the method, path and arrival of the request answered.
        self._logged: tuple[str, str, float] | None = None
        self._host: str | None = None  # the client's address, read when limits need it
        # Requests pipelined behind the one being answered.
        self._queue: deque[tuple[Request, bool]] | None = None
        self._paused = False
        self._closed = False
        self._deadline = 0.0  # on the server's clock; 0: none
        # The timeout of the head or body begun in this feed, armed if it stays unfinished.
        self._pending_timeout = 0.0
        self._tick = -1  # where the server's wheel holds the connection, if >= 0
        self._due = 0.0  # when the wheel looks at it then

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        server = self._server
        if not server.admit(self):
            # Over the connection limit: say so and close.
            transport.write(server.busy_answer)
            self._linger()
            return
        self._set_deadline(server.limits.head_timeout_seconds)
        if server.app.client_counts is not None or server.access_log:
            peer = transport.get_extra_info("peername")
            self._host = peer[0] if isinstance(peer, tuple) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._tick >= 0:
            self._server.deadlines.discard(self, self._tick)
            self._tick = -1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._server.app.manager.forget(waiter)
        self._end_wait()
        self._queue = None
        self._transport = None
        # The parser refers back to this protocol: let the pair go without the collector.
        self._parser = None  # type: ignore[assignment]
        self._server.release(self)

    def eof_received(self) -> bool:
        # A client that closes its side is gone: HTTP clients do not half-close.
        return False

    def data_received(self, data: bytes) -> None:
        if self._closed or self._streaming is not None:
            return  # nothing more is read from a stream's client
        try:
            self._feed(data)
        except httptools.HttpParserCallbackError as exc:
            reason = exc.__context__
            if isinstance(reason, HttpError):
                self._refuse(reason.status, reason.message)
            elif isinstance(reason, httptools.HttpParserInvalidURLError):
                self._malformed(reason)
            else:
                logger.error("failed to parse a request", exc_info=reason)
                self._refuse(500, "internal server error")
        except httptools.HttpParserUpgrade:
            # The request asked to switch protocols: answered as plain HTTP, then
            # the connection ends, as what follows is not HTTP/1.1.
            self._request_keep_alive = False
            self._keep_alive = False
            if not self._busy:
                self._close()
        except httptools.HttpParserError as exc:
            if not self._request_keep_alive and not self._in_head:
                return  # bytes after a request that ends the connection: not read
            self._malformed(exc)

    def _feed(self, data: bytes) -> None:
        _FEEDING.connection = self
        parser = self._parser
        limit = self._server.head_limit
        if not self._in_head or self._head_bytes + len(data) <= limit:
            if self._in_head:
                self._head_bytes += len(data)
            parser.feed_data(data)
        else:
            view = memoryview(data)
            for start in range(0, len(data), _PIECE):
                piece = view[start : start + _PIECE]
                if self._in_head:
                    self._head_bytes += len(piece)
                    if self._head_bytes > limit:
                        self._refuse(431, "request head is too large")
                        return
                parser.feed_data(piece)
                if self._closed:
                    return
        # A head or body still unfinished once its bytes so far are read gets its
        # timeout now; one that arrived whole never needed one.
        if self._pending_timeout:
            if not self._closed:
                self._set_deadline(self._pending_timeout)
            self._pending_timeout = 0.0

    # httptools callbacks. They are static and read the connection being fed: a
    # parser calls back only from `feed_data`, and static methods give it no bound
    # method per callback to hold (seven objects more per waiting subscriber).

    @staticmethod
    def on_message_begin() -> None:
        self = _FEEDING.connection
        assert self is not None
        self._in_head = True
        self._head_bytes = self._header_bytes = 0
        self._url = b""
        self._headers = []
        self._body = None
        self._body_size = 0
        self._pending_timeout = self._server.limits.head_timeout_seconds

    @staticmethod
    def on_url(url: bytes) -> None:
        self = _FEEDING.connection
        assert self is not None
        self._url += url
        if len(self._url) > self._server.limits.max_url_bytes:
            raise HttpError(414, "request URL is too long")

    @staticmethod
    def on_header(name: bytes, value: bytes) -> None:
        self = _FEEDING.connection
        assert self is not None
        headers = self._headers
        headers.append((name.lower(), value))
        self._header_bytes += len(name) + len(value) + 4
        limits = self._server.limits
        if len(headers) > limits.max_headers:
            raise HttpError(431, f"more than {limits.max_headers} request headers")
        if self._header_bytes > limits.max_header_bytes:
            raise HttpError(431, "request headers are too large")

    @staticmethod
    def on_headers_complete() -> None:
        self = _FEEDING.connection
        assert self is not None
        self._in_head = False
        self._request_keep_alive = self._parser.should_keep_alive()
        length = origin = authorization = None
        chunked = expect = False
        # The headers the server reads, found in one pass; the access policy reads two.
        for name, value in self._headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
            elif name == b"origin":
                origin = value if origin is None else origin
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
        self._origin, self._authorization = origin, authorization
        if length is None and not chunked:
            self._pending_timeout = 0.0
            self._clear_deadline()
            return
        if declared_too_large(length, self._server.body_limit):
            raise body_too_large(self._server.body_limit)
        self._body = []
        self._pending_timeout = self._server.app.body_timeout_seconds
        if expect and not self._busy and self._transport is not None:
            self._transport.write(_CONTINUE)

    @staticmethod
    def on_body(body: bytes) -> None:
        self = _FEEDING.connection
        assert self is not None
        self._body_size += len(body)
        if self._body_size > self._server.body_limit:
            raise body_too_large(self._server.body_limit)
        assert self._body is not None
        self._body.append(body)

    @staticmethod
    def on_message_complete() -> None:
        self = _FEEDING.connection
        assert self is not None
        if self._closed:
            return
        self._pending_timeout = 0.0
        self._clear_deadline()
        method = self._parser.get_method().decode("ascii", "replace")
        target = self._url
        if target.startswith(b"/") and b"#" not in target:
            raw_path, _, query = target.partition(b"?")
        else:  # absolute form, or a fragment (which clients should not send)
            url = httptools.parse_url(target)
            raw_path, query = url.path or b"", url.query or b""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        body = b"".join(self._body) if self._body else b""
        self._body = None
        request = Request(method, path, query, self._headers, body)
        request.known(self._origin, self._authorization)
        self._headers = _NO_HEADERS  # a new list comes with the next message
        if self._busy:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append((request, self._request_keep_alive))
            if len(queue) >= self._server.limits.max_pipelined and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True
            return
        self._handle(request, self._request_keep_alive)

    # Answering

    def _handle(self, request: Request, keep_alive: bool) -> None:
        self._endpoint = None
        self._started = 0.0
        if self._server.access_log:
            self._logged = (request.method, request.path, time.monotonic())
        self._busy = True
        self._keep_alive = keep_alive
        self._head_only = request.method == "HEAD"
        try:
            self._dispatch(request)
        except Exception as exc:
            self._waiter = None  # if it was a subscribe, it is not waiting
            self._respond(self._error_response(exc))

    def _dispatch(self, request: Request) -> None:
        app = self._server.app
        endpoint = self._endpoint = app.routes.endpoint(request.path)
        if endpoint is _SUBSCRIBE:
            self._dispatch_subscribe(app, request, wants_stream(request))
        elif endpoint is _STREAM:
            self._dispatch_subscribe(app, request, True)
        elif endpoint is _PUBLISH:
            self._dispatch_publish(app, request)
        elif endpoint in OPERATIONS:
            self._spawn(self._finish(app.operations_response(endpoint, request)))
        elif endpoint is _CLIENT:
            self._respond(app.client.respond(request))
        elif endpoint is Endpoint.CONSOLE:
            assert app.console is not None
            self._respond(app.console.respond(request))
        else:
            self._respond(app.client_module.respond(request))

    def _opens(self, access: AccessPolicy, request: Request, action: Action) -> bool:
        """Answer a CORS preflight (False); else note the CORS headers of the answer
        and check the method (True: the request goes on)."""
        if request.method == "OPTIONS":
            self._respond(access.preflight(request, action))  # with its own CORS headers
            return False
        self._extra = access.cors_headers(request, action)
        check_method(request.method, *_METHODS[action])
        return True

    def _dispatch_subscribe(self, app: LongpollApp, request: Request, stream: bool) -> None:
        access = app.access
        if not self._opens(access, request, "subscribe"):
            return
        subscription = subscription_of(request, app.manager.options, stream)
        if access.wants_client:
            request.client = self._client()
        deciding = access.check(request, "subscribe", subscription.categories)
        if deciding is None:
            self._subscribe(app, subscription, stream)
        else:
            self._spawn(self._subscribe_once_allowed(app, subscription, stream, deciding))

    def _subscribe(self, app: LongpollApp, subscription: Subscription, stream: bool) -> None:
        if app.client_counts is not None:
            app.client_counts.begin_wait(self._host)
            self._waiting_counted = True
        waiter: _Subscriber | _Stream
        if stream:
            announce = subscription.since_time is None
            waiter = self._waiter = _Stream(subscription.categories, self, announce)
            reading = app.manager.start_stream(subscription, waiter)
        else:
            waiter = self._waiter = _Subscriber(subscription.categories, self)
            reading = app.manager.start_wait(subscription, waiter)
        if reading is not None:
            self._spawn(self._finish_read(waiter, reading))
        elif self._waiter is waiter and not self._started:
            self._started = time.monotonic()  # it waits for events

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Answer the request being handled by `work`, in a task of its own."""
        if not self._started:
            self._started = time.monotonic()
        self._server.spawn(work)

    async def _subscribe_once_allowed(
        self,
        app: LongpollApp,
        subscription: Subscription,
        stream: bool,
        deciding: Awaitable[None],
    ) -> None:
        try:
            await deciding
            if not self._closed:
                self._subscribe(app, subscription, stream)
        except Exception as exc:
            self._waiter = None
            self._respond(self._error_response(exc))

    def _dispatch_publish(self, app: LongpollApp, request: Request) -> None:
        access = app.access
        if not self._opens(access, request, "publish"):
            return
        publication = parse_publish_body(request.body, request.header(b"idempotency-key"))
        if access.wants_client:
            request.client = self._client()
        deciding = access.check(request, "publish", (publication.category,))
        if app.client_counts is not None:
            app.client_counts.check_publish(self._host)
        if deciding is not None:
            self._spawn(self._finish(_publish_once_allowed(app.manager, deciding, publication)))
            return
        stored = app.manager.publish_nowait(*publication)
        if isinstance(stored, Event | Repeated):
            self._respond(Response(200, published_body(stored)))
        else:
            self._spawn(self._finish(_published_response(stored)))

    def _log_access(self, status: int, size: int, note: str = "") -> None:
        assert self._logged is not None
        method, path, arrived = self._logged
        self._logged = None
        access_logger.info(
            '%s "%s %s" %d %d %.1f ms%s',
            self._host or "-",
            method,
            _loggable(path),
            status,
            size,
            (time.monotonic() - arrived) * 1000,
            f" ({note})" if note else "",
        )

    def _end_wait(self) -> None:
        """Stop counting the subscribe answered (or left) among its client's."""
        if self._waiting_counted:
            self._waiting_counted = False
            counts = self._server.app.client_counts
            if counts is not None:
                counts.end_wait(self._host)

    def _client(self) -> tuple[str, int] | None:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return (peer[0], peer[1]) if isinstance(peer, tuple) else None

    async def _finish_read(self, waiter: _Subscriber | _Stream, reading: Awaitable[None]) -> None:
        try:
            await reading
        except Exception as exc:
            waiter.fail(exc)

    async def _finish(self, answering: Awaitable[Response]) -> None:
        try:
            response = await answering
        except Exception as exc:
            response = self._error_response(exc)
        self._respond(response)

    def answer_batch(self, waiter: _Subscriber, batch: Batch) -> None:
        """Answer the waiting subscriber `waiter` (called by the fan-out)."""
        if waiter is not self._waiter:
            return
        self._waiter = None
        if not self._respond(Response(200, batch_body(batch))):
            return
        manager = self._server.app.manager
        acknowledging = manager.acknowledge_nowait(batch)
        if acknowledging is not None:
            self._server.spawn(acknowledging)

    def answer_error(self, waiter: _Subscriber | _Stream, error: Exception) -> None:
        """Answer the waiting subscriber `waiter` with an error of the backend."""
        if waiter is self._waiter:
            self._waiter = None
            self._respond(self._error_response(error))

    # Streams

    def stream_batch(self, stream: _Stream, batch: Batch) -> None:
        """Write `batch` down the stream (called by the fan-out); the first batch
        opens it, a closing one ends it."""
        transport = self._transport
        if stream is not self._waiter or transport is None or self._closed:
            return
        if not stream.opened:
            if batch.closing:
                self._waiter = None
                self._respond(error_response(503, SHUTTING_DOWN))
                return
            stream.opened = True
            self._open_stream(transport, OPENING + batch_frames(batch, stream.announce))
        elif batch.closing:
            self._end_stream()
            return
        else:
            self._write_chunk(transport, batch_frames(batch))
        if transport.get_write_buffer_size() > self._server.limits.write_high_water_bytes:
            self._cut_stream()  # the client does not read: no more memory for it
            return
        if batch.events:
            acknowledging = self._server.app.manager.acknowledge_nowait(batch)
            if acknowledging is not None:
                self._server.spawn(acknowledging)

    def stream_failed(self, stream: _Stream, error: Exception) -> None:
        """End the stream on an error of the backend; before it opened, answer it."""
        if stream is not self._waiter:
            return
        if stream.opened:
            self._end_stream()
        else:
            self.answer_error(stream, error)

    def _open_stream(self, transport: asyncio.Transport, first: bytes) -> None:
        server = self._server
        head = _STREAM_HEAD
        if self._extra:
            head += _head_lines(self._extra)
            self._extra = ()
        chunked = self._parser.get_http_version() == "1.1"
        self._streaming = chunked
        if chunked:
            head += b"transfer-encoding: chunked\r\n"
            first = b"%x\r\n%b\r\n" % (len(first), first)
        else:
            head += b"connection: close\r\n"
        date = DATE_LINE.get(time.time())
        transport.write(b"%b%b%b\r\n%b" % (_status_line(200), date, head, first))
        server.requests.answered(self._endpoint, 200, 0.0)
        if self._logged is not None:
            self._log_access(200, 0, "stream")
        self._set_deadline(server.app.stream_heartbeat_seconds)

    def _write_chunk(self, transport: asyncio.Transport, payload: bytes) -> None:
        if self._streaming:
            transport.write(b"%x\r\n%b\r\n" % (len(payload), payload))
        else:
            transport.write(payload)

    def _end_stream(self) -> None:
        """End the stream cleanly (the server is shutting down, or its backend failed)."""
        self._forget_waiter()
        transport = self._transport
        if transport is not None and not self._closed and self._streaming:
            transport.write(b"0\r\n\r\n")
        self._linger()

    def _cut_stream(self) -> None:
        self._forget_waiter()
        self._close(abort=True)

    def _forget_waiter(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._server.app.manager.forget(waiter)

    def _error_response(self, error: Exception) -> Response:
        response = response_for(error)
        if response is None:
            logger.error("failed to answer a request", exc_info=error)
            response = error_response(500, "internal server error")
        return response

    def _respond(self, response: Response) -> bool:
        """Write `response`; True if it was written (the client is still there)."""
        transport = self._transport
        if transport is None or self._closed:
            return False
        server = self._server
        if transport.get_write_buffer_size() > server.limits.write_high_water_bytes:
            # The client does not read its answers: no more memory for it.
            self._closed = True
            transport.abort()
            return False
        keep_alive = self._keep_alive and not server.closing
        self._write(transport, response, keep_alive)
        self._busy = False
        if self._waiting_counted:
            self._end_wait()
        started = self._started
        server.requests.answered(
            self._endpoint, response.status, time.monotonic() - started if started else 0.0
        )
        if self._logged is not None:
            waited = started and self._endpoint is _SUBSCRIBE
            note = "waited for events" if waited else ""
            self._log_access(response.status, len(response.body), note)
        if not keep_alive:
            self._linger()
            return True
        if self._queue:
            asyncio.get_running_loop().call_soon(self._next)
        elif not self._in_head and self._body is None:
            self._set_deadline(server.limits.keep_alive_timeout_seconds)
        return True

    def _write(self, transport: asyncio.Transport, response: Response, keep_alive: bool) -> None:
        status, body, headers = response
        head = _JSON_HEAD if headers is JSON_HEADERS else _head_lines(headers)
        if self._extra:
            head += _head_lines(self._extra)
            self._extra = ()
        if not keep_alive:
            head += b"connection: close\r\n"
        elif self._parser.get_http_version() != "1.1":
            head += b"connection: keep-alive\r\n"
        if status not in BODILESS_STATUSES:
            head += b"content-length: %d\r\n" % len(body)
        date = DATE_LINE.get(time.time())
        if self._head_only:
            body = b""
        transport.write(b"%b%b%b\r\n%b" % (_status_line(status), date, head, body))

    def _next(self) -> None:
        """Answer the next pipelined request, if the connection is free for it."""
        queue = self._queue
        if self._busy or self._closed or not queue:
            return
        request, keep_alive = queue.popleft()
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        self._handle(request, keep_alive)

    # Ending

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be read to its end, then close."""
        if self._busy or self._transport is None:
            self._close(abort=True)
            return
        self._busy = True
        self._keep_alive = False
        self._head_only = False
        self._endpoint = None
        self._started = 0.0
        self._respond(error_response(status, message))

    def _malformed(self, error: Exception) -> None:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        self._server.log_malformed(peer, error)
        self._refuse(400, "malformed HTTP request")

    def _linger(self) -> None:
        """Close once the client has read what was written: end our side, then
        discard what it still sends until it closes its side or `_LINGER_SECONDS` pass.

        Closing at once would reset a connection whose client is still sending (a
        body refused with 413, pipelined requests), and the reset can destroy the
        answer before the client reads it.
        """
        transport = self._transport
        if transport is None or not transport.can_write_eof():
            self._close()
            return
        self._closed = True
        try:
            transport.write_eof()
        except OSError:  # the client is gone already
            transport.abort()
            return
        self._set_deadline(_LINGER_SECONDS)

    def _close(self, abort: bool = False) -> None:
        self._closed = True
        self._clear_deadline()
        transport = self._transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()

    def close_if_idle(self) -> bool:
        """Close the connection unless a request is under way; True if it was closed."""
        if self._busy or self._in_head or self._body is not None:
            return False
        self._close()
        return True

    def abort(self) -> None:
        """Cut the connection at once."""
        self._close(abort=True)

    # Deadlines: the head, the body, or the idle time between requests

    def _set_deadline(self, seconds: float) -> None:
        # The wheel holds the connection once, at its earliest deadline; a later or
        # cleared deadline is looked at only when that one comes (see deadline_passed),
        # so that the requests of a keep-alive connection cost no wheel work.
        server = self._server
        deadline = self._deadline = server.clock() + seconds
        if self._tick >= 0:
            if deadline >= self._due:
                return
            server.deadlines.discard(self, self._tick)  # too late for the new deadline
        self._arm(seconds)

    def _arm(self, seconds: float) -> None:
        """Have the server's wheel look at the connection in `seconds`."""
        wheel = self._server.deadlines
        tick = self._tick = wheel.add(self, seconds)
        self._due = wheel.time_of(tick)

    def _clear_deadline(self) -> None:
        self._deadline = 0.0

    def deadline_passed(self) -> None:
        """Called by the server's wheel when the connection's deadline may have passed."""
        self._tick = -1
        if not self._deadline:
            return
        remaining = self._deadline - self._server.clock()
        if remaining > 0:
            self._arm(remaining)
            return
        self._deadline = 0.0
        if self._closed:
            if self._transport is not None:
                self._transport.abort()  # lingering, and the client has not left yet
            return
        if self._streaming is not None and self._transport is not None:
            self._write_chunk(self._transport, HEARTBEAT)
            self._set_deadline(self._server.app.stream_heartbeat_seconds)
            return
        if self._in_head or self._body is not None:
            self._refuse(408, "request did not arrive in time")
        else:
            self._close()


class _Feeding:
    """The connection whose bytes the parser is reading now."""

    __slots__ = ("connection",)

    def __init__(self) -> None:
        self.connection: HttpConnection | None = None


_FEEDING = _Feeding()
_NO_HEADERS: list[tuple[bytes, bytes]] = []


async def _published_response(storing: Awaitable[Stored]) -> Response:
    return Response(200, published_body(await storing))


async def _publish_once_allowed(
    manager: LongpollManager, deciding: Awaitable[None], publication: Publication
) -> Response:
    await deciding
    stored = manager.publish_nowait(*publication)
    if not isinstance(stored, Event | Repeated):
        stored = await stored
    return Response(200, published_body(stored))


def _loggable(path: str) -> str:
    """`path` for a log line: control characters and quotes escaped (a decoded path may
    hold a newline that would forge a line), at most 1,000 characters."""
    if not path.isprintable() or '"' in path or "\\" in path:
        path = repr(path)[1:-1].replace('"', '\\"')
    return path if len(path) <= 1000 else path[:1000] + "..."


_STREAM_HEAD = b"".join(b"%b: %b\r\n" % header for header in STREAM_HEADERS)


def _head_lines(headers: Headers) -> bytes:
    return b"".join([b"%b: %b\r\n" % header for header in headers])
