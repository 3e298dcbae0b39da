"""The protocol logic that both client flavours share. No I/O happens here.

It checks options and arguments, builds subscribe URLs and publish bodies, turns
answers (and the bytes of Server-Sent Events streams) into events or errors, keeps
a subscription's resume position, and decides whether and how long to wait before
the next poll or stream, and whether a refused token is worth one more try. The
async and sync shells only send the requests, call the token provider and do the
waiting.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import inspect
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NoReturn, TypeGuard

import httpx
import orjson

from longpoll.client._sse import SseParser
from longpoll.errors import (
    ClientError,
    ConnectionFailed,
    InvalidRequest,
    ProtocolError,
    ServerError,
)
from longpoll.event import check_category, encode_data, wire_dict

logger = logging.getLogger("longpoll.client")

Since = datetime.datetime | int | Literal["now"]
"""Where a subscription starts: a time, epoch milliseconds (negative: everything
buffered) or "now" (only events published after its first request arrives)."""

FailureHandler = Callable[[ClientError], bool]
"""Called with each failure; True retries after a back-off wait, False stops."""

Token = str | Callable[[], str]
"""The `token` option of `Client`: a bearer token, or a function returning the
current one, called before each request."""

AsyncToken = str | Callable[[], str | Awaitable[str]]
"""The `token` option of `AsyncClient`: as `Token`, and the function may be async."""

HttpClient = httpx.Client | httpx.AsyncClient

REQUEST_TIMEOUT_SECONDS = 30.0
"""Connect, write and pool timeouts of the clients' own httpx clients, and the read
timeout of a publish."""
READ_MARGIN_SECONDS = 15.0
"""A poll's read timeout is its poll timeout plus this: the server answers first."""
STREAM_IDLE_SECONDS = 60.0
"""A Server-Sent Events stream that carries nothing for this long, not even a
heartbeat, is taken as lost and opened again. Servers send heartbeats far more
often (longpoll's every 15 s by default)."""
_RETRIED_STATUSES = frozenset({408, 429})
_MAX_MESSAGE_CHARS = 200
_UNAUTHORIZED = 401
_EVENT_STREAM = "text/event-stream"
_POSITION = re.compile(r"-?[0-9]{1,19}")
_TOKEN = re.compile(r"[\x21-\x7e]+")
"""A bearer token as it may go in a header: visible ASCII characters, no space."""
_TOKEN_RULE = (
    'must be a non-empty string of visible ASCII characters, the token alone (no "Bearer ")'
)


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event as a subscriber receives it: the four keys of the wire protocol.

    `after_gap` is the gap signal: the server dropped events published between the
    subscription's position and this event (for its buffer size or age) before the
    client could get them. A gap reported by a timeout answer is flagged on the
    next event received.
    """

    timestamp: int
    """Milliseconds since the epoch, assigned by the server."""
    category: str
    data: Any
    id: uuid.UUID
    after_gap: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object the server sent (without `after_gap`)."""
        return wire_dict(self.timestamp, self.category, self.data, self.id)


@dataclass(frozen=True, slots=True)
class Published:
    """The server's acknowledgement of a publish.

    `id` and `timestamp` locate the new event; they are None when the server does
    not send them (golongpoll answers only `{"success": true}`). `repeat` is true
    when the server had stored the event already, from an earlier attempt of the
    same publish (or a publish of the same id): it was not stored again.
    """

    id: uuid.UUID | None
    timestamp: int | None
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """A client's checked options."""

    subscribe_url: httpx.URL
    publish_url: httpx.URL | None
    poll_timeout_seconds: int
    retry_wait_seconds: float
    max_retry_wait_seconds: float
    success_wait_seconds: float
    headers: dict[str, str]
    """Extra headers of every request, with the basic auth header or the bearer token
    header if one was given (a token given as a string)."""
    on_failure: FailureHandler | None
    token_provider: Callable[[], object] | None = None
    publish_attempts: int = 5
    """How many times a publish is sent before its failure is raised (see `Publishing`)."""
    """The function giving the current bearer token, called before each request."""

    def poll_headers(self, token: object = None) -> httpx.Headers:
        """The headers of a poll: JSON answers (not Server-Sent Events), plus ours.

        `token` is what the token provider returned for this request (ignored
        without a provider); `InvalidRequest` if it is not a token.
        """
        return self._with_headers("Accept", "application/json", token)

    def stream_headers(self, token: object, last_event_id: str | None) -> httpx.Headers:
        """The headers that open a Server-Sent Events stream, resuming after
        `last_event_id`; `token` as for `poll_headers`."""
        headers = self._with_headers("Accept", _EVENT_STREAM, token)
        headers["Cache-Control"] = "no-cache"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return headers

    def publish_headers(self, token: object = None) -> httpx.Headers:
        """The headers of a publish request, with `token` as for `poll_headers`."""
        return self._with_headers("Content-Type", "application/json", token)

    def renews_token(self, status: int) -> bool:
        """Whether an answer of `status` calls for sending the request once more, at
        once, with a fresh token from the provider: a 401 when there is a provider.

        The shells ask this of the first answer only, so a token refused twice in
        a row (or a static one refused once) is an error for the caller.
        """
        if status != _UNAUTHORIZED or self.token_provider is None:
            return False
        logger.info("the server refused the token (401); trying once more with a fresh one")
        return True

    def _with_headers(self, name: str, value: str, token: object) -> httpx.Headers:
        headers = httpx.Headers({name: value})
        headers.update(self.headers)
        if self.token_provider is not None:
            headers["Authorization"] = bearer(_provided_token(token))
        return headers

    def poll_timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base` with a read timeout longer than the poll: the server answers first."""
        return _with_read_timeout(base, self.poll_timeout_seconds + READ_MARGIN_SECONDS)

    def stream_timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base` with `STREAM_IDLE_SECONDS` as the read timeout of a stream."""
        return _with_read_timeout(base, STREAM_IDLE_SECONDS)


def _with_read_timeout(base: httpx.Timeout, read: float) -> httpx.Timeout:
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


def make_settings(
    subscribe_url: str,
    publish_url: str | None,
    poll_timeout_seconds: int,
    retry_wait_seconds: float,
    max_retry_wait_seconds: float,
    success_wait_seconds: float,
    basic_auth: tuple[str, str] | None,
    headers: Mapping[str, str] | None,
    on_failure: FailureHandler | None,
    token: str | Callable[[], object] | None = None,
    *,
    awaitable_tokens: bool = False,
    publish_attempts: int = 5,
) -> Settings:
    """Check the options of a client, raising `ValueError` naming the first bad one.

    `token` is a bearer token or a function returning one; with `awaitable_tokens`
    (the async client), the function may return an awaitable of it.
    """
    if not _is_int(poll_timeout_seconds) or poll_timeout_seconds < 1:
        raise ValueError(
            f"poll_timeout_seconds must be a whole number of at least 1, "
            f"not {poll_timeout_seconds!r}"
        )
    _check_seconds("retry_wait_seconds", retry_wait_seconds, positive=True)
    _check_seconds("max_retry_wait_seconds", max_retry_wait_seconds, positive=True)
    if max_retry_wait_seconds < retry_wait_seconds:
        raise ValueError("max_retry_wait_seconds must not be less than retry_wait_seconds")
    _check_seconds("success_wait_seconds", success_wait_seconds, positive=False)
    all_headers = dict(headers or {})
    if basic_auth is not None:
        if len(basic_auth) != 2 or not all(isinstance(part, str) for part in basic_auth):
            raise ValueError("basic_auth must be a (username, password) pair of strings")
        credentials = base64.b64encode(":".join(basic_auth).encode("utf-8")).decode("ascii")
        all_headers["Authorization"] = f"Basic {credentials}"
    token_provider = _check_token_option(token, basic_auth, all_headers, awaitable_tokens)
    if isinstance(token, str):
        all_headers["Authorization"] = bearer(token)
    if on_failure is not None and not callable(on_failure):
        raise ValueError("on_failure must be callable")
    if not _is_int(publish_attempts) or publish_attempts < 1:
        raise ValueError(
            f"publish_attempts must be a whole number of at least 1, not {publish_attempts!r}"
        )
    return Settings(
        subscribe_url=_check_url("subscribe_url", subscribe_url),
        publish_url=None if publish_url is None else _check_url("publish_url", publish_url),
        poll_timeout_seconds=poll_timeout_seconds,
        retry_wait_seconds=float(retry_wait_seconds),
        max_retry_wait_seconds=float(max_retry_wait_seconds),
        success_wait_seconds=float(success_wait_seconds),
        headers=all_headers,
        on_failure=on_failure,
        token_provider=token_provider,
        publish_attempts=publish_attempts,
    )


def bearer(token: str) -> str:
    """The `Authorization` header value that presents `token`."""
    return f"Bearer {token}"


def _check_token_option(
    token: object,
    basic_auth: object,
    headers: Mapping[str, str],
    awaitable_tokens: bool,
) -> Callable[[], object] | None:
    """The token provider of the `token` option (None for a string or no token)."""
    if token is None:
        return None
    if basic_auth is not None:
        raise ValueError("give basic_auth or token, not both")
    if any(name.lower() == "authorization" for name in headers):
        raise ValueError("give an Authorization header or token, not both")
    if isinstance(token, str):
        if _TOKEN.fullmatch(token) is None:
            raise ValueError(f"token {_TOKEN_RULE}")
        return None
    if not callable(token):
        raise ValueError(
            f"token must be a string or a function returning one, not {type(token).__name__}"
        )
    if not awaitable_tokens and inspect.iscoroutinefunction(token):
        raise ValueError("token must be a function returning a string: async ones need AsyncClient")
    return token


def _provided_token(token: object) -> str:
    """What the token provider returned, if it is a token; `InvalidRequest` (a
    `ValueError`) otherwise, before anything is sent.

    The messages never show the token: it is a secret.
    """
    if not isinstance(token, str):
        raise InvalidRequest(f"the token provider must return a string, not {type(token).__name__}")
    if _TOKEN.fullmatch(token) is None:
        raise InvalidRequest(f"the token provider's token {_TOKEN_RULE}")
    return token


def _check_url(name: str, url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (TypeError, httpx.InvalidURL) as exc:
        raise ValueError(f"{name} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{name} must be an absolute http:// or https:// URL, not {url!r}")
    return parsed


def _check_seconds(name: str, value: object, *, positive: bool) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} number of seconds, not {value!r}")


def check_categories(categories: Sequence[str]) -> tuple[str, ...]:
    """The categories of a subscription, raising `InvalidRequest` if any is bad."""
    if not categories:
        raise InvalidRequest("subscribe to at least one category")
    return tuple(check_category(category) for category in categories)


def since_time_of(since: Since) -> int | None:
    """The `since_time` parameter for `since` (None for "now").

    A naive datetime is taken as local time, as `datetime.timestamp()` does.
    """
    if isinstance(since, datetime.datetime):
        return int(since.timestamp() * 1000)
    if since == "now":
        return None
    if isinstance(since, bool) or not isinstance(since, int):
        raise InvalidRequest(
            f'since must be a datetime, epoch milliseconds or "now", not {since!r}'
        )
    if not -(2**63) <= since < 2**63:
        raise InvalidRequest("since must fit in a signed 64-bit integer")
    return since


def last_id_of(last_id: uuid.UUID | str | None, since_time: int | None) -> uuid.UUID | None:
    """The `last_id` to resume after, raising `InvalidRequest` if it is bad."""
    if last_id is None:
        return None
    if since_time is None:
        raise InvalidRequest("last_id needs since")
    if isinstance(last_id, uuid.UUID):
        return last_id
    try:
        return uuid.UUID(last_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidRequest(f"last_id must be a UUID, not {last_id!r}") from None


class Backoff:
    """Exponential back-off with jitter.

    After `failures` failures in a row the wait is `first * 2 ** (failures - 1)`,
    capped at `cap`, times a random factor between 0.5 and 1, so that the clients
    of a restarted server do not all come back at the same moment.
    """

    def __init__(
        self, first: float, cap: float, jitter: Callable[[], float] = random.random
    ) -> None:
        self.first = first
        self.cap = cap
        self._jitter = jitter

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row (none after none)."""
        if failures < 1:
            return 0.0
        ceiling = min(self.cap, self.first * 2.0 ** min(failures - 1, 64))
        return ceiling * (0.5 + 0.5 * self._jitter())


def retried_by_default(error: ClientError) -> bool:
    """Whether a failure may pass by waiting: connection failures, 5xx, 408 and 429.

    Other errors (a rejected request, an answer that is not the protocol) would
    only repeat, so without an `on_failure` callback they stop the subscription.
    """
    if isinstance(error, ConnectionFailed):
        return True
    if isinstance(error, ServerError):
        return error.status >= 500 or error.status in _RETRIED_STATUSES
    return False


class StreamState:
    """The protocol state of one subscription, by polls or by Server-Sent Events.

    It knows where the subscription stands (`since_time` and `last_id` of the last
    event yielded, or the resume point of a timeout answer or of a stream), builds
    the next poll or stream request, reads answers and streams, and decides what a
    failure means. The position never moves back, and events already yielded at
    the current millisecond are dropped if a server sends them again, so resuming
    causes no duplicate.
    """

    def __init__(
        self,
        settings: Settings,
        categories: tuple[str, ...],
        since_time: int | None,
        last_id: uuid.UUID | None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.categories = categories
        self.since_time = since_time
        self.last_id = last_id
        self.failures = 0
        """Failures in a row; a valid answer resets it."""
        self.wait_seconds = 0.0
        """How long to wait before the next poll."""
        self._seen_at_since_time: set[uuid.UUID] = set() if last_id is None else {last_id}
        self._gap_pending = False
        self._backoff = Backoff(
            settings.retry_wait_seconds, settings.max_retry_wait_seconds, jitter
        )
        self._parser = SseParser()
        self._carried = False  # the open stream has sent something

    def poll_url(self) -> httpx.URL:
        """The URL of the next poll."""
        params = self._category_params()
        params.append(("timeout", str(self.settings.poll_timeout_seconds)))
        if self.since_time is not None:
            params.append(("since_time", str(self.since_time)))
            if self.last_id is not None:
                params.append(("last_id", str(self.last_id)))
        return self.settings.subscribe_url.copy_merge_params(params)

    def poll_request(self, http: HttpClient, token: object, **extensions: Any) -> httpx.Request:
        """The next poll, sent with `token` (see `Settings.poll_headers`) by `http`."""
        settings = self.settings
        return http.build_request(
            "GET",
            self.poll_url(),
            headers=settings.poll_headers(token),
            timeout=settings.poll_timeout(http.timeout),
            extensions=extensions,
        )

    def stream_request(self, http: HttpClient, token: object, **extensions: Any) -> httpx.Request:
        """The request that opens a stream at the position (`Last-Event-ID`), sent
        with `token` by `http`."""
        position = None
        if self.since_time is not None:
            position = str(self.since_time)
            if self.last_id is not None:
                position += f":{self.last_id}"
        settings = self.settings
        return http.build_request(
            "GET",
            settings.subscribe_url.copy_merge_params(self._category_params()),
            headers=settings.stream_headers(token, position),
            timeout=settings.stream_timeout(http.timeout),
            extensions=extensions,
        )

    def stream_opened(self, status: int, content_type: str) -> bool:
        """Whether an answer opens a stream; if so, the failures in a row end and
        the stream is read from its start. `refused` raises for one that does not."""
        if status != 200 or content_type.partition(";")[0].strip().lower() != _EVENT_STREAM:
            return False
        self._parser = SseParser()
        self._carried = False
        self.failures = 0
        self.wait_seconds = 0.0
        return True

    def refused(self, status: int, body: bytes, reason: str = "") -> NoReturn:
        """Raise `ServerError`, or `ProtocolError`, for an answer that opens no stream."""
        with contextlib.suppress(ProtocolError):
            _json_object(status, body, reason)
        raise ProtocolError(f"the answer is not a Server-Sent Events stream: {_excerpt(body)!r}")

    def stream_received(self, chunk: bytes) -> list[ReceivedEvent]:
        """The new events that `chunk`, the next bytes of the stream, completes.

        Raises `ProtocolError` for an event that is not the protocol's.
        """
        self._carried = self._carried or bool(chunk)
        fresh: list[ReceivedEvent] = []
        for frame in self._parser.feed(chunk):
            if frame.event == "missed":
                self._take([], missed=True)
            elif frame.data is not None:
                fresh += self._take([_stream_event(frame.data)], missed=False)
            elif frame.id is not None:  # a resume point without an event
                if _POSITION.fullmatch(frame.id) is None:
                    raise ProtocolError(f"the stream's id is not a position: {frame.id!r}")
                self._resume_from(int(frame.id))
        return fresh

    def stream_ended(self) -> None:
        """Record the clean end of a stream (a server shutting down ends them): the
        next opens after `success_wait_seconds`. One that ended before it sent
        anything raises `ConnectionFailed`, a failure."""
        if not self._carried:
            raise ConnectionFailed("the server ended the stream before it sent anything")
        self.wait_seconds = self.settings.success_wait_seconds

    def received(self, status: int, body: bytes, reason: str = "") -> list[ReceivedEvent]:
        """The new events of a poll's answer (none for a timeout).

        Raises `ServerError` or `ProtocolError` for an answer that is not a success.
        """
        answer = _json_object(status, body, reason)
        missed = answer.get("missed") is True
        raw_events = answer.get("events")
        if raw_events is not None:
            if not isinstance(raw_events, list):
                raise ProtocolError("the answer's events are not a list")
            events = [_event(raw) for raw in raw_events]
        elif "timeout" in answer:
            events = []
            timestamp = answer.get("timestamp")
            if timestamp is not None and not _is_int(timestamp):
                raise ProtocolError("the timeout answer's timestamp is not an integer")
            self._resume_from(timestamp)
        else:
            raise ProtocolError("the answer has neither events nor a timeout")
        self.failures = 0
        self.wait_seconds = self.settings.success_wait_seconds
        return self._take(events, missed)

    def _take(self, events: list[ReceivedEvent], missed: bool) -> list[ReceivedEvent]:
        """`events` but those already yielded, the first flagged `after_gap` when a
        gap (`missed`: just before them) has not been flagged yet."""
        fresh = [event for event in events if not self._seen(event)]
        if missed:
            logger.warning("events of %s were dropped before this client got them", self.categories)
            self._gap_pending = True
        if fresh and self._gap_pending:
            self._gap_pending = False
            fresh[0] = replace(fresh[0], after_gap=True)
        return fresh

    def advance(self, event: ReceivedEvent) -> None:
        """Move the position to `event`, which is being yielded."""
        if event.timestamp != self.since_time:
            self._seen_at_since_time.clear()
        self._seen_at_since_time.add(event.id)
        self.since_time = event.timestamp
        self.last_id = event.id

    def failed(self, error: ClientError) -> None:
        """Record a failed poll: re-raise `error` to stop, else set the back-off wait.

        `on_failure` decides when it is given, else `retried_by_default`.
        """
        self.failures += 1
        handler = self.settings.on_failure
        retry = handler(error) if handler is not None else retried_by_default(error)
        if not retry:
            raise error
        self.wait_seconds = self._backoff.delay(self.failures)
        logger.warning(
            "receiving %s failed (%s); retrying in %.2f s",
            self.categories,
            error,
            self.wait_seconds,
        )

    def _category_params(self) -> list[tuple[str, str | int | float | bool | None]]:
        return [("category", category) for category in self.categories]

    def _seen(self, event: ReceivedEvent) -> bool:
        return event.timestamp == self.since_time and event.id in self._seen_at_since_time

    def _resume_from(self, timestamp: int | None) -> None:
        # Every event published after a timeout answer has a later timestamp than
        # it, so the answer's timestamp is a safe position, unless it is not past ours.
        if timestamp is None:
            return
        if self.since_time is None or timestamp > self.since_time:
            self.since_time = timestamp
            self.last_id = None
            self._seen_at_since_time.clear()


_PUBLISH_RETRIED_STATUSES = frozenset({408, 429, 502, 503, 504})


class Publishing:
    """One publish, sent until it is acknowledged: its body, with the event's id,
    and whether a failed attempt is worth another.

    Every attempt carries the same id, and a longpoll server stores an id once, so
    a publish whose answer was lost (a timeout, a dropped connection, a 503 saying
    the store may have it) is retried without being stored twice. Connection
    failures, timeouts and 408, 429, 502, 503 and 504 answers are retried, up to
    the client's `publish_attempts` attempts, after the client's back-off waits (or a longer
    `Retry-After`); any other error is raised at once.
    """

    def __init__(
        self,
        settings: Settings,
        category: str,
        data: Any,
        event_id: uuid.UUID | str | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        check_category(category)
        if event_id is None:
            self.event_id = uuid.uuid4()
        else:
            try:
                self.event_id = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id)
            except (TypeError, ValueError, AttributeError):
                raise InvalidRequest(f"event_id must be a UUID, not {event_id!r}") from None
        self.body = b'{"category":%b,"data":%b,"id":"%s"}' % (
            orjson.dumps(category),
            encode_data(data),
            str(self.event_id).encode("ascii"),
        )
        self.attempts = 0
        self._max_attempts = settings.publish_attempts
        self._backoff = Backoff(
            settings.retry_wait_seconds, settings.max_retry_wait_seconds, jitter
        )
        self._retry_after: str | None = None

    def acknowledged(self, response: httpx.Response) -> Published:
        """The acknowledgement of an attempt's answer; raises `ServerError` or
        `ProtocolError` for an answer that is not one (see `retry_after`)."""
        self._retry_after = response.headers.get("retry-after")
        return published(response.status_code, response.content, response.reason_phrase)

    def retry_after(self, error: ClientError, retry_after: str | None = None) -> float | None:
        """The seconds to wait before sending again after `error`, or None to raise it.

        `retry_after` is the answer's `Retry-After` header, by default that of the
        answer `acknowledged` read since the last failure, if any.
        """
        if retry_after is None:
            retry_after, self._retry_after = self._retry_after, None
        self.attempts += 1
        if self.attempts >= self._max_attempts:
            return None
        if isinstance(error, ServerError):
            if error.status not in _PUBLISH_RETRIED_STATUSES:
                return None
        elif not isinstance(error, ConnectionFailed):
            return None
        wait = self._backoff.delay(self.attempts)
        if retry_after is not None and retry_after.strip().isdigit():
            wait = max(wait, min(float(retry_after), self._backoff.cap))
        logger.warning("publish failed (%s); sending it again in %.2f s", error, wait)
        return wait


def published(status: int, body: bytes, reason: str = "") -> Published:
    """The acknowledgement in a publish answer; raises `ServerError` or `ProtocolError`."""
    answer = _json_object(status, body, reason)
    if answer.get("success") is not True:
        raise ProtocolError("the publish answer does not say success")
    event_id = answer.get("id")
    timestamp = answer.get("timestamp")
    try:
        parsed_id = uuid.UUID(event_id) if isinstance(event_id, str) else None
    except ValueError:
        raise ProtocolError(f"the publish answer's id is not a UUID: {event_id!r}") from None
    repeat = answer.get("repeat") is True
    return Published(parsed_id, timestamp if _is_int(timestamp) else None, repeat)


def no_publish_url() -> ClientError:
    return ClientError("this client has no publish_url to publish to")


def closed_client() -> ClientError:
    return ClientError("the client is closed")


def connection_failed(exc: httpx.HTTPError, url: httpx.URL) -> ConnectionFailed:
    """The error to raise (from `exc`) when a request to `url` got no valid HTTP answer."""
    where = url.copy_with(query=None)
    if isinstance(exc, httpx.TimeoutException):
        return ConnectionFailed(f"no answer from {where} in time ({type(exc).__name__})")
    reason = str(exc) or type(exc).__name__
    return ConnectionFailed(f"cannot reach {where}: {reason}")


def stream_broke(exc: httpx.HTTPError, url: httpx.URL) -> ConnectionFailed:
    """The error to raise (from `exc`) when an open stream from `url` fails."""
    where = url.copy_with(query=None)
    if isinstance(exc, httpx.ReadTimeout):
        idle = f"{STREAM_IDLE_SECONDS:g} s"
        return ConnectionFailed(f"the stream from {where} sent nothing for {idle}")
    reason = str(exc) or type(exc).__name__
    return ConnectionFailed(f"the stream from {where} broke: {reason}")


def _json_object(status: int, body: bytes, reason: str) -> dict[str, Any]:
    """The JSON object of a successful answer; raises `ServerError` for an error."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not 200 <= status < 300:
        raise ServerError(status, _server_message(status, answer, body, reason))
    if not isinstance(answer, dict):
        raise ProtocolError(f"the answer is not a JSON object: {_excerpt(body)!r}")
    error = answer.get("error")
    if error is not None:
        raise ServerError(status, str(error))
    return answer


def _server_message(status: int, answer: object, body: bytes, reason: str) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    if answer is None and body.strip():
        # Not JSON: a proxy in front (or another server) answered, not longpoll.
        cause = _PROXY_CAUSES.get(status, "")
        return (
            f"{reason or 'an error'}, not JSON: likely from a proxy in front of the server{cause}"
        )
    return _excerpt(body) or reason or "no message"


_PROXY_CAUSES = {
    502: ", which could not reach it (down, restarting, or a wrong upstream address)",
    504: ", which gave up waiting for it: the proxy's read timeout (nginx: "
    "proxy_read_timeout) must be longer than the poll timeout",
    413: ", whose body size limit (nginx: client_max_body_size) is below this request",
}


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


def _stream_event(data: str) -> ReceivedEvent:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        excerpt = _excerpt(data.encode())
        raise ProtocolError(f"an event of the stream is not JSON: {excerpt!r}") from None
    return _event(raw)


def _event(raw: object) -> ReceivedEvent:
    if not isinstance(raw, dict):
        raise ProtocolError("an event is not a JSON object")
    timestamp = raw.get("timestamp")
    category = raw.get("category")
    event_id = raw.get("id")
    if not _is_int(timestamp):
        raise ProtocolError("an event's timestamp is not an integer")
    if not isinstance(category, str):
        raise ProtocolError("an event's category is not a string")
    if not isinstance(event_id, str):
        raise ProtocolError("an event has no id")
    try:
        parsed_id = uuid.UUID(event_id)
    except ValueError:
        raise ProtocolError(f"an event's id is not a UUID: {event_id!r}") from None
    return ReceivedEvent(timestamp, category, raw.get("data"), parsed_id)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
