"""The async client: `_core`'s protocol logic over `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
import inspect
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from longpoll.client import _core
from longpoll.client._core import (
    AsyncToken,
    FailureHandler,
    Published,
    ReceivedEvent,
    Settings,
    Since,
    StreamState,
)
from longpoll.errors import ClientError


class AsyncClient:
    """Subscribes to and publishes on a long-polling server, from async code.

    Works with any server of the wire protocol, golongpoll's included. Use it as
    `async with AsyncClient(...) as client:` (or call `aclose()`).

    - `subscribe_url`: the full URL of the subscribe endpoint, such as
      `http://127.0.0.1:8101/events`; `publish_url` likewise, if you publish.
    - `poll_timeout_seconds`: how long the server holds each poll (45).
    - `retry_wait_seconds`: the wait after a failed poll (1 s), doubled after each
      further failure in a row up to `max_retry_wait_seconds` (30 s), each wait
      shortened by a random factor of up to a half.
    - `success_wait_seconds`: a wait after each successful poll (0).
    - `basic_auth` (a `(username, password)` pair) and `headers` go with every request.
    - `token`: a bearer token, sent as `Authorization: Bearer <token>` with every
      request; not with `basic_auth` or an `Authorization` header. Or a function
      returning the current token (a string, or an awaitable of one: it may be
      async), called before each request, poll and publish alike, on the event
      loop; it should cache the token and renew it shortly before it expires. An
      exception it raises, or `InvalidRequest` for a value that is not a token,
      ends the subscription (or the publish). When the server refuses a token
      with 401, the request is sent once more at once with the function's next
      token; a 401 after that, a 401 to a string token and any 403 are
      `ServerError`s, which stop the subscription unless `on_failure` says otherwise.
    - `on_failure(error)`: called with each failed poll; True retries, False stops
      the subscription, which then raises the error. Without it, connection
      failures and 5xx, 408 and 429 answers are retried and the others raise.
    - `http_client` or `transport`: bring your own httpx client (its timeouts are
      used, except that a poll's read timeout is always above the poll timeout) or
      transport. A client given is not closed by `aclose()`.
    """

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
        token: AsyncToken | None = None,
        headers: Mapping[str, str] | None = None,
        on_failure: FailureHandler | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
            awaitable_tokens=True,
        )
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=_core.REQUEST_TIMEOUT_SECONDS
        )
        self._streams: weakref.WeakSet[AsyncEventStream] = weakref.WeakSet()
        self._closed = False

    def subscribe(
        self,
        *categories: str,
        since: Since = "now",
        last_id: uuid.UUID | str | None = None,
    ) -> AsyncEventStream:
        """The events of `categories`, as an async iterator that never ends by itself.

        `since` is where to start: a datetime, epoch milliseconds (negative:
        everything the server buffers) or "now" (events published after the first
        poll arrives). With `last_id`, start after that event of the millisecond
        `since`. Several categories need a server with that extension (ours).
        Raises `InvalidRequest` for a bad argument, `ClientError` if the client is closed.
        """
        checked = _core.check_categories(categories)
        since_time = _core.since_time_of(since)
        state = StreamState(
            self.settings, checked, since_time, _core.last_id_of(last_id, since_time)
        )
        if self._closed:
            raise _core.closed_client()
        stream = AsyncEventStream(self, state)
        self._streams.add(stream)
        return stream

    async def publish(self, category: str, data: Any) -> Published:
        """Publish `data` (anything JSON can encode but None) and return the acknowledgement.

        Raises `InvalidRequest` for a bad argument (before sending anything),
        `ServerError` when the server refuses, `ConnectionFailed` when there is no
        answer and `ProtocolError` for an answer that is not the protocol's.
        """
        url = self.settings.publish_url
        if url is None:
            raise _core.no_publish_url()
        body = _core.publish_body(category, data)
        if self._closed:
            raise _core.closed_client()
        response = await self._post(url, body)
        if self.settings.renews_token(response.status_code):
            response = await self._post(url, body)
        return _core.published(response.status_code, response.content, response.reason_phrase)

    async def aclose(self) -> None:
        """Stop every subscription, wait for their requests to end, close the connections."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            await stream.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _poll(self, state: StreamState) -> list[ReceivedEvent]:
        if self._closed:
            raise _core.closed_client()
        url = state.poll_url()
        response = await self._get(url)
        if self.settings.renews_token(response.status_code):
            response = await self._get(url)
        return state.received(response.status_code, response.content, response.reason_phrase)

    async def _get(self, url: httpx.URL) -> httpx.Response:
        headers = self.settings.poll_headers(await _current_token(self.settings))
        try:
            return await self._http.get(
                url, headers=headers, timeout=self.settings.poll_timeout(self._http.timeout)
            )
        except httpx.HTTPError as exc:
            raise _core.connection_failed(exc, url) from exc

    async def _post(self, url: httpx.URL, body: bytes) -> httpx.Response:
        headers = self.settings.publish_headers(await _current_token(self.settings))
        try:
            return await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _core.connection_failed(exc, url) from exc


class AsyncEventStream:
    """The events of a subscription, oldest first: `async for event in stream:`.

    It resumes from the last event it yielded across timeouts, failures and
    reconnections, so no event is missed or repeated while the server still
    buffers the position. `since_time` and `last_id` are that position: pass
    them to `subscribe()` to continue later.

    Stopping ends the request in flight at once: `aclose()` or `stop()` (from the
    event loop's thread) make the iteration end, and cancelling the iterating
    task cancels the request with it. Each poll runs in a child task for that.
    """

    def __init__(self, client: AsyncClient, state: StreamState) -> None:
        self._client = client
        self._state = state
        self._pending: deque[ReceivedEvent] = deque()
        self._stopped = False
        self._step: asyncio.Task[list[ReceivedEvent]] | None = None

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

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> ReceivedEvent:
        while not self._pending:
            if self._stopped:
                raise StopAsyncIteration
            step = self._step = asyncio.create_task(self._next_batch())
            try:
                events = await step
            except asyncio.CancelledError:
                if self._stopped and not _being_cancelled():
                    raise StopAsyncIteration from None
                self._stopped = True
                raise
            except BaseException:
                self._stopped = True
                raise
            finally:
                self._step = None
            if self._stopped:  # stopped as the poll ended: its events are not yielded
                raise StopAsyncIteration
            self._pending.extend(events)
        event = self._pending.popleft()
        self._state.advance(event)
        return event

    async def _next_batch(self) -> list[ReceivedEvent]:
        """One poll after the wait it calls for: its events, none for a timeout or
        a failure that is retried; raises the failure that stops the stream."""
        state = self._state
        if state.wait_seconds > 0:
            await asyncio.sleep(state.wait_seconds)
        try:
            return await self._client._poll(state)
        except ClientError as error:
            state.failed(error)
            return []

    def stop(self) -> None:
        """End the stream: the iteration ends, and a poll in flight is cancelled."""
        self._stopped = True
        self._pending.clear()
        if self._step is not None:
            self._step.cancel()

    async def aclose(self) -> None:
        """`stop()`, then wait until the request in flight, if any, has ended."""
        step = self._step
        self.stop()
        if step is not None and step is not asyncio.current_task():
            await asyncio.wait({step})

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _current_token(settings: Settings) -> object:
    """What the token provider gives for the next request (None without one)."""
    provider = settings.token_provider
    if provider is None:
        return None
    token = provider()
    if inspect.isawaitable(token):
        token = await token
    return token


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
