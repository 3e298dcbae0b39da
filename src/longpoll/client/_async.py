"""The async client: `_base` and `_core` over `httpx.AsyncClient`.

A subscription's events come from a source, polls or one Server-Sent Events
stream at a time; `AsyncEventStream` does the rest (waiting, failures, stopping)
the same way for both.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx

from longpoll.client import _core
from longpoll.client._base import BaseClient, BaseEventStream
from longpoll.client._core import AsyncToken, Published, ReceivedEvent, Settings, StreamState
from longpoll.errors import ClientError


class AsyncClient(
    BaseClient["AsyncEventStream", httpx.AsyncClient, httpx.AsyncBaseTransport, AsyncToken]
):
    """Subscribes to and publishes on a long-polling server, from async code.

    Works with any server of the wire protocol, golongpoll's included. Use it as
    `async with AsyncClient(...) as client:` (or call `aclose()`). `subscribe()`
    polls; `stream()` takes the same events over Server-Sent Events, from a
    server that streams them (longpoll's).

    - `subscribe_url`: the full URL of the subscribe endpoint, such as
      `http://127.0.0.1:8101/events`; `publish_url` likewise, if you publish.
    - `poll_timeout_seconds`: how long the server holds each poll (45).
    - `retry_wait_seconds`: the wait after a failed poll (1 s), doubled after each
      further failure in a row up to `max_retry_wait_seconds` (30 s), each wait
      shortened by a random factor of up to a half.
    - `success_wait_seconds`: a wait after each successful poll (0).
    - `publish_attempts`: how many times `publish()` sends an event (with the same
      id, after the back-off waits) before it raises the failure (5).
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

    _awaitable_tokens = True

    async def publish(
        self, category: str, data: Any, *, event_id: uuid.UUID | str | None = None
    ) -> Published:
        """Publish `data` (anything JSON can encode but None) and return the acknowledgement.

        The event gets `event_id` (a UUID), or a random one, and every attempt
        carries it: a publish that fails on the way (no answer, a timeout, a 503)
        is sent again, up to five times with the client's back-off, and a longpoll
        server stores it once however many attempts reached it (`repeat` in the
        acknowledgement then says it was stored before).

        Raises `InvalidRequest` for a bad argument (before sending anything),
        `ServerError` when the server refuses, `ConnectionFailed` when there is no
        answer and `ProtocolError` for an answer that is not the protocol's.
        """
        publishing, request = self._publishing(category, data, event_id)
        while True:
            try:
                return publishing.acknowledged(await self._send(request))
            except ClientError as error:
                wait = publishing.retry_after(error)
                if wait is None or self._closed:
                    raise
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Stop every subscription, wait for their requests to end, close the connections."""
        streams = self._closing()
        if streams is None:
            return
        for stream in streams:
            await stream.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _new_http(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, timeout=_core.REQUEST_TIMEOUT_SECONDS)

    def _new_stream(self, state: StreamState, streaming: bool) -> AsyncEventStream:
        source = _EventSource if streaming else _Polls
        return AsyncEventStream(state, source(self, state))

    async def _send(
        self, request: Callable[[object], httpx.Request], *, stream: bool = False
    ) -> httpx.Response:
        """Send the request `request(token)` makes with the current token, once more
        with a fresh one after a 401 if the token provider may renew it. With
        `stream`, the answer's body is left to read."""
        if self._closed:
            raise _core.closed_client()
        response = await self._send_once(request, stream)
        if self.settings.renews_token(response.status_code):
            await response.aclose()
            response = await self._send_once(request, stream)
        return response

    async def _send_once(
        self, request: Callable[[object], httpx.Request], stream: bool
    ) -> httpx.Response:
        built = request(await _current_token(self.settings))
        try:
            return await self._http.send(built, stream=stream)
        except httpx.HTTPError as exc:
            raise _core.connection_failed(exc, built.url) from exc


class _Source(Protocol):
    """Where a subscription's events come from, one step at a time."""

    async def next_events(self) -> list[ReceivedEvent]:
        """The next events; none after a timeout. Raises a `ClientError` that failed."""
        ...

    async def aclose(self) -> None:
        """Let go of what is held between steps."""
        ...


class _Polls:
    """One poll a step."""

    def __init__(self, client: AsyncClient, state: StreamState) -> None:
        self._client = client
        self._state = state

    async def aclose(self) -> None:
        pass  # nothing is held between polls

    async def next_events(self) -> list[ReceivedEvent]:
        state, http = self._state, self._client._http
        response = await self._client._send(lambda token: state.poll_request(http, token))
        return state.received(response.status_code, response.content, response.reason_phrase)


class _EventSource:
    """A Server-Sent Events stream, read until it brings events, opened again at
    the position when it has ended."""

    def __init__(self, client: AsyncClient, state: StreamState) -> None:
        self._client = client
        self._state = state
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None

    async def next_events(self) -> list[ReceivedEvent]:
        state = self._state
        response = self._response
        if response is None:
            response = self._response = await self._open()
            self._chunks = response.aiter_bytes()
        assert self._chunks is not None
        try:
            async for chunk in self._chunks:
                events = state.stream_received(chunk)
                if events:
                    return events
            await self.aclose()
            state.stream_ended()
            return []
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, httpx.HTTPError):
                raise _core.stream_broke(exc, response.url) from exc
            raise

    async def _open(self) -> httpx.Response:
        state, http = self._state, self._client._http
        response = await self._client._send(
            lambda token: state.stream_request(http, token), stream=True
        )
        if state.stream_opened(response.status_code, response.headers.get("content-type", "")):
            return response
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            raise _core.connection_failed(exc, response.url) from exc
        finally:
            await response.aclose()
        state.refused(response.status_code, body, response.reason_phrase)

    async def aclose(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            await response.aclose()


class AsyncEventStream(BaseEventStream):
    """The events of a subscription, oldest first: `async for event in stream:`.

    It resumes from the last event it yielded across timeouts, failures and
    reconnections, so no event is missed or repeated while the server still
    buffers the position. `since_time` and `last_id` are that position: pass
    them to `subscribe()` to continue later.

    Stopping ends the request in flight at once: `aclose()` or `stop()` (from the
    event loop's thread) make the iteration end, and cancelling the iterating
    task cancels the request with it. Each poll, or each read of a stream
    (`AsyncClient.stream()`), runs in a child task for that.
    """

    def __init__(self, state: StreamState, source: _Source) -> None:
        super().__init__(state)
        self._source = source
        self._stopped = False
        self._step: asyncio.Task[list[ReceivedEvent]] | None = None

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> ReceivedEvent:
        while not self._pending:
            if self._stopped:
                await self._source.aclose()
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
            if self._stopped:  # stopped as the step ended: its events are not yielded
                continue
            self._pending.extend(events)
        return self._yield_pending()

    async def _next_batch(self) -> list[ReceivedEvent]:
        """One step of the source after the wait it calls for: its events, none for
        a timeout or a failure that is retried; raises the failure that stops the
        stream."""
        state = self._state
        if state.wait_seconds > 0:
            await asyncio.sleep(state.wait_seconds)
        try:
            return await self._source.next_events()
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
        """`stop()`, then wait until the request in flight, if any, has ended, and
        close a stream's response."""
        step = self._step
        self.stop()
        if step is not None and step is not asyncio.current_task():
            await asyncio.wait({step})
        await self._source.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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
