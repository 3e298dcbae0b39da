"""What the async and sync clients share, in the manner of httpx's `BaseClient`:
their options, the subscriptions and publishes they start and check, and the
position of a subscription. The shells (`_async`, `_sync`) add the I/O.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from longpoll.client import _core
from longpoll.client._core import (
    AsyncToken,
    FailureHandler,
    HttpClient,
    ReceivedEvent,
    Since,
    StreamState,
)

# What differs between the two clients: their streams, httpx clients and transports,
# and the token functions they take.
StreamT = TypeVar("StreamT", bound="BaseEventStream")
HttpT = TypeVar("HttpT", bound=HttpClient)
TransportT = TypeVar("TransportT")
TokenT = TypeVar("TokenT", bound=AsyncToken)


class BaseClient(ABC, Generic[StreamT, HttpT, TransportT, TokenT]):
    """A client's checked options, its httpx client and its subscriptions."""

    _awaitable_tokens: ClassVar[bool] = False
    """Whether a token function may return an awaitable."""

    def __init__(
        self,
        subscribe_url: str,
        *,
        publish_url: str | None = None,
        poll_timeout_seconds: int = 45,
        retry_wait_seconds: float = 1.0,
        max_retry_wait_seconds: float = 30.0,
        success_wait_seconds: float = 0.0,
        basic_auth: tuple[str, str] | None = None,
        token: TokenT | None = None,
        headers: Mapping[str, str] | None = None,
        on_failure: FailureHandler | None = None,
        http_client: HttpT | None = None,
        transport: TransportT | None = None,
        publish_attempts: int = 5,
    ) -> None:
        self.settings = _core.make_settings(
            subscribe_url,
            publish_url,
            poll_timeout_seconds,
            retry_wait_seconds,
            max_retry_wait_seconds,
            success_wait_seconds,
            basic_auth,
            headers,
            on_failure,
            token,
            awaitable_tokens=self._awaitable_tokens,
            publish_attempts=publish_attempts,
        )
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        self._owns_http = http_client is None
        # Without either, the sync client gives each subscription connections of its own.
        self._shared_connections = http_client is not None or transport is not None
        self._http = self._new_http(transport) if http_client is None else http_client
        self._streams: weakref.WeakSet[StreamT] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(
        self,
        *categories: str,
        since: Since = "now",
        last_id: uuid.UUID | str | None = None,
    ) -> StreamT:
        """The events of `categories`, as an iterator that never ends by itself (an
        async iterator from `AsyncClient`).

        `since` is where to start: a datetime, epoch milliseconds (negative:
        everything the server buffers) or "now" (events published after the first
        poll arrives). With `last_id`, start after that event of the millisecond
        `since`. Several categories need a server with that extension (ours).
        Raises `InvalidRequest` for a bad argument, `ClientError` if the client is closed.
        """
        return self._start(categories, since, last_id, streaming=False)

    def stream(
        self,
        *categories: str,
        since: Since = "now",
        last_id: uuid.UUID | str | None = None,
    ) -> StreamT:
        """The events of `categories` as `subscribe()` gives them, over one open
        Server-Sent Events response instead of polls (the server must stream them,
        as longpoll's does); `since` and `last_id` as for `subscribe()`.

        A stream that breaks, or sends nothing for `STREAM_IDLE_SECONDS` (60 s;
        servers send heartbeats more often), is a failed poll: `on_failure` and the
        back-off apply, then it is opened again with the position as
        `Last-Event-ID`. One that ends cleanly (a server shutting down ends them)
        is opened again after `success_wait_seconds`. A token function is called
        for each opening. `poll_timeout_seconds` is not used, nor the server's
        `retry` field. The response stays open between events, and leaving the
        loop does not end it: the stream's `aclose()` or `async with` does (with
        `Client`, its `close()`, the end of a `with` block or its garbage collection).
        """
        return self._start(categories, since, last_id, streaming=True)

    def _start(
        self,
        categories: tuple[str, ...],
        since: Since,
        last_id: uuid.UUID | str | None,
        *,
        streaming: bool,
    ) -> StreamT:
        checked = _core.check_categories(categories)
        since_time = _core.since_time_of(since)
        state = StreamState(
            self.settings, checked, since_time, _core.last_id_of(last_id, since_time)
        )
        with self._lock:
            if self._closed:
                raise _core.closed_client()
            stream = self._new_stream(state, streaming)
            self._streams.add(stream)
        return stream

    def _publishing(
        self, category: str, data: Any, event_id: uuid.UUID | str | None
    ) -> tuple[_core.Publishing, Callable[[object], httpx.Request]]:
        """A publish, checked before anything is sent, and its request for a token."""
        url = self.settings.publish_url
        if url is None:
            raise _core.no_publish_url()
        publishing = _core.Publishing(self.settings, category, data, event_id)
        if self._closed:
            raise _core.closed_client()

        def request(token: object) -> httpx.Request:
            headers = self.settings.publish_headers(token)
            return self._http.build_request("POST", url, content=publishing.body, headers=headers)

        return publishing, request

    def _closing(self) -> list[StreamT] | None:
        """Mark the client closed: its streams to stop, None if it was closed already."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            return list(self._streams)

    @abstractmethod
    def _new_http(self, transport: TransportT | None) -> HttpT:
        """The client's own httpx client, over `transport` if one is given."""

    @abstractmethod
    def _new_stream(self, state: StreamState, streaming: bool) -> StreamT:
        """A subscription at `state`, by Server-Sent Events if `streaming`, else by polls."""


class BaseEventStream:
    """The position of a subscription and the events it is still to yield."""

    def __init__(self, state: StreamState) -> None:
        self._state = state
        self._pending: deque[ReceivedEvent] = deque()

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories subscribed to."""
        return self._state.categories

    @property
    def since_time(self) -> int | None:
        """The position: the timestamp of the last event yielded (or of a timeout)."""
        return self._state.since_time

    @property
    def last_id(self) -> uuid.UUID | None:
        """The id of the last event yielded, if the position is an event."""
        return self._state.last_id

    def _yield_pending(self) -> ReceivedEvent:
        """The next event to yield, which moves the position to it."""
        event = self._pending.popleft()
        self._state.advance(event)
        return event
