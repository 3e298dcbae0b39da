"""The HTTP API whatever carries it: requests checked once, answers built as bytes.

Both ways in use this module: longpoll's own HTTP/1.1 server (`longpoll.server`)
and the ASGI handlers (`longpoll.asgi`). A request arrives as a `Request`; an
answer is a `Response` of status, headers and body bytes. What differs between the
two is only how bytes travel and how a client that left is noticed.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import orjson

from longpoll.backends.base import Repeated, Stored
from longpoll.errors import (
    BackendUnavailable,
    InvalidRequest,
    ManagerClosed,
    PersistenceFailed,
    PublishUnconfirmed,
    StoreFull,
)
from longpoll.event import Event, check_category, encode_data, parse_uuid
from longpoll.waiting import Batch

Headers = Sequence[tuple[bytes, bytes]]

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-cache, no-store, must-revalidate"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-content-type-options", b"nosniff"),
)


_UNREAD = object()


class Request:
    """One HTTP request: method, path (percent-decoded), raw query and headers.

    Header names are lower case. `body` is the whole body, when it has one.
    `client` is the peer's (host, port) when the server knows it and an
    `AccessPolicy` hook may ask for it, else None.
    """

    __slots__ = (
        "_authorization",
        "_origin",
        "body",
        "client",
        "headers",
        "method",
        "path",
        "query",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: Headers,
        body: bytes = b"",
        client: tuple[str, int] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self._origin: bytes | object | None = _UNREAD
        self._authorization: bytes | object | None = _UNREAD

    def known(self, origin: bytes | None, authorization: bytes | None) -> None:
        """Set what `origin` and `authorization` are, found while the headers were read."""
        self._origin, self._authorization = origin, authorization

    @property
    def origin(self) -> bytes | None:
        """The `Origin` header (a browser's page that sent the request), if any."""
        origin = self._origin
        if origin is _UNREAD:
            origin = self._origin = self.header(b"origin")
        return origin  # type: ignore[return-value]

    @property
    def authorization(self) -> bytes | None:
        """The `Authorization` header, if any."""
        value = self._authorization
        if value is _UNREAD:
            value = self._authorization = self.header(b"authorization")
        return value  # type: ignore[return-value]

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case), if any."""
        for key, value in self.headers:
            if key == name:
                return bytes(value)
        return None

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.path!r}, query={self.query!r})"


BODILESS_STATUSES = frozenset({204, 304})
"""Answers that carry no body, and so no Content-Length either."""


class Response(NamedTuple):
    """A whole answer: status, headers (without Content-Length) and body."""

    status: int
    body: bytes
    headers: Headers = JSON_HEADERS


class HttpError(Exception):
    """A request the API refuses with `status` (and extra headers, such as `Allow`)."""

    def __init__(self, status: int, message: str, headers: Headers = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


SHUTTING_DOWN = "server is shutting down"


def json_response(status: int, body: bytes, extra_headers: Headers = ()) -> Response:
    """A response whose JSON body is already encoded."""
    if not extra_headers:
        return Response(status, body)
    return Response(status, body, (*JSON_HEADERS, *extra_headers))


def error_response(status: int, message: str, extra_headers: Headers = ()) -> Response:
    """`{"error": message}` with `status`."""
    return json_response(status, orjson.dumps({"error": message}), extra_headers)


def _unconfirmed(error: PublishUnconfirmed) -> Response:
    body = {"error": str(error), "code": "publish_unconfirmed", "id": str(error.event_id)}
    return json_response(503, orjson.dumps(body))


ERROR_RESPONSES: Mapping[type[Exception], Callable[[Any], Response]] = {
    HttpError: lambda error: error_response(error.status, error.message, error.headers),
    InvalidRequest: lambda error: error_response(400, str(error)),
    ManagerClosed: lambda error: error_response(503, SHUTTING_DOWN),
    PublishUnconfirmed: _unconfirmed,
    BackendUnavailable: lambda error: error_response(503, str(error)),
    PersistenceFailed: lambda error: error_response(500, str(error)),
    StoreFull: lambda error: error_response(507, str(error), ((b"retry-after", b"10"),)),
}
"""The answer to each error of the API or the manager, by the error's class."""


def response_for(error: Exception) -> Response | None:
    """The answer to an error, from the nearest of its classes in `ERROR_RESPONSES`;
    None for any other error."""
    for cls in type(error).__mro__:
        answer = ERROR_RESPONSES.get(cls)
        if answer is not None:
            return answer(error)
    return None


def body_too_large(limit: int) -> HttpError:
    """The 413 error for a body over `limit` bytes."""
    return HttpError(413, f"request body is larger than {limit} bytes")


def declared_too_large(content_length: bytes | None, limit: int) -> bool:
    """True if a Content-Length header value declares more than `limit` bytes."""
    if content_length is None or not content_length.isdigit():
        return False
    return len(content_length) > 18 or int(content_length) > limit


def check_seconds(name: str, value: object) -> None:
    """Raise `ValueError` naming `name` unless `value` is a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number of seconds, not {value!r}")


def check_method(method: str, allowed: tuple[str, ...], message: str) -> None:
    """Raise the 405 error (with `message`) unless `method` is one of `allowed`."""
    if method not in allowed:
        raise HttpError(405, message, ((b"allow", ", ".join(allowed).encode()),))


def batch_body(batch: Batch) -> bytes:
    """The response body for `batch`, joined from the events' pre-encoded JSON."""
    missed = b',"missed":true' if batch.missed else b""
    if batch.events:
        return b'{"events":[%b]%b}' % (b",".join([event.json for event in batch.events]), missed)
    return b'{"timeout":"no events before timeout","timestamp":%d%b}' % (
        batch.timestamp,
        missed,
    )


def published_body(stored: Stored) -> bytes:
    """The answer to a publish: the event's id and timestamp (and, when the event
    was stored before under its id, `"repeat":true`)."""
    if type(stored) is Repeated:
        event = stored.event
        return b'{"success":true,"id":"%b","timestamp":%d,"repeat":true}' % (
            event.id_ascii,
            event.timestamp,
        )
    event = cast(Event, stored)
    return b'{"success":true,"id":"%b","timestamp":%d}' % (event.id_ascii, event.timestamp)


class Publication(NamedTuple):
    """A publish request, checked: what to store, and the id its publisher chose."""

    category: str
    data: Any
    data_json: bytes
    event_id: uuid.UUID | None


def parse_publish_body(body: bytes, idempotency_key: bytes | None = None) -> Publication:
    """The publication a publish body asks for; `InvalidRequest` if bad.

    The body is JSON whatever the Content-Type says. The event's id may come as
    `"id"` in the body or as the `Idempotency-Key` header (`idempotency_key`),
    a UUID either way.
    """
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
    data = message.get("data")
    if data is None:
        if "data" not in message:
            raise InvalidRequest("data is required")
        raise InvalidRequest("data must not be null")
    event_id = _event_id(message.get("id"), "id")
    if idempotency_key is not None:
        key = _event_id(idempotency_key.decode("latin-1").strip(), "the Idempotency-Key header")
        if event_id is not None and key != event_id:
            raise InvalidRequest("id and the Idempotency-Key header name different events")
        event_id = key
    return Publication(category, data, encode_data(data), event_id)


def _event_id(value: object, name: str) -> uuid.UUID | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a UUID string")
    try:
        return parse_uuid(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a UUID") from None


class Endpoint(enum.Enum):
    """What a path serves."""

    SUBSCRIBE = "subscribe"
    STREAM = "stream"
    """Subscribe with Server-Sent Events whatever the request accepts."""
    PUBLISH = "publish"
    STATS = "stats"
    HEALTH = "health"
    READY = "ready"
    METRICS = "metrics"
    CLIENT = "client"
    CLIENT_MODULE = "client module"
    CONSOLE = "console"
    """The console page and its files (see `CONSOLE_FILES`)."""
    NONE = "none"
    """No endpoint: a path that serves nothing (404)."""

    # Members are singletons: hashing them by identity keeps it in C (Enum's own
    # __hash__ is Python code, run for every request counted in the metrics).
    __hash__ = object.__hash__


OPERATIONS = frozenset({Endpoint.STATS, Endpoint.HEALTH, Endpoint.READY, Endpoint.METRICS})
"""The endpoints for operators (and their tools), not for subscribers and publishers."""


CONSOLE_FILES = ("/console.css", "/console.js", "/longpoll.js")
"""The console page's files, at its path (without a trailing `/`) plus these."""


class Routes:
    """Which endpoint each path serves; a path of None leaves its endpoint out.

    A client path ending in `.js` also serves the ES module form at the same
    path ending in `.mjs`; the console's path also serves its `CONSOLE_FILES`.
    """

    def __init__(self, paths: Mapping[Endpoint, str | None]) -> None:
        pairs = list(paths.items())
        client_path = paths.get(Endpoint.CLIENT)
        if client_path is not None and client_path.endswith(".js"):
            pairs.append((Endpoint.CLIENT_MODULE, client_path.removesuffix(".js") + ".mjs"))
        console_path = paths.get(Endpoint.CONSOLE)
        if console_path is not None:
            base = console_path.rstrip("/")
            pairs += [(Endpoint.CONSOLE, base + name) for name in CONSOLE_FILES]
        self._endpoints: dict[str, Endpoint] = {}
        for endpoint, path in pairs:
            if path is None:
                continue
            if not path.startswith("/"):
                raise ValueError(f"the {endpoint.value} path must start with '/', not {path!r}")
            if path in self._endpoints:
                raise ValueError(f"two endpoints share the path {path!r}")
            self._endpoints[path] = endpoint

    def endpoint(self, path: str) -> Endpoint:
        """The endpoint at `path`; raises the 404 error if there is none."""
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            raise HttpError(404, f"no such endpoint: {path}")
        return endpoint


SUBSCRIBE_METHODS = (("GET",), "use GET to subscribe")
PUBLISH_METHODS = (("POST",), "use POST to publish")
READ_METHODS = (("GET", "HEAD"), "use GET")
