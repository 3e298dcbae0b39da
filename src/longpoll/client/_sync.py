"""The sync client: `_base` and `_core` over `httpx.Client`.

A blocking read cannot be cancelled, and closing a socket from another thread
does not wake a thread blocked reading it; shutting the socket down does. So
each poll (and each Server-Sent Events request) carries httpx's `trace`
extension, which reports the sockets its connections open, and
`EventStream.stop()` shuts those down from any thread.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from longpoll.client import _core
from longpoll.client._base import BaseClient, BaseEventStream
from longpoll.client._core import Published, ReceivedEvent, Settings, StreamState, Token
from longpoll.errors import ClientError


class Client(BaseClient["EventStream", httpx.Client, httpx.BaseTransport, Token]):
    """Subscribes to and publishes on a long-polling server, from blocking code.

    Works with any server of the wire protocol, golongpoll's included. Use it as
    `with Client(...) as client:` (or call `close()`); it may be used from any
    thread, and each subscription from one thread at a time.

    The options are those of `AsyncClient`, with `http_client` an `httpx.Client`
    and `transport` an `httpx.BaseTransport`. Unless one of those two is given,
    each subscription polls over connections of its own, so that `stop()` can
    end its poll at once from any thread (see `EventStream`).

    A `token` function must return a string (not an awaitable). It is called in
    the thread that makes the request: each stream's iterating thread and each
    publishing thread, so possibly in several threads at once. Like
    `AsyncClient`'s, it should cache the token and renew it shortly before it
    expires; after a 401 it is called once more and the request repeated.
    """

    _ssl_context: ssl.SSLContext | None = None

    def publish(
        self, category: str, data: Any, *, event_id: uuid.UUID | str | None = None
    ) -> Published:
        """Publish `data` (anything JSON can encode but None) and return the
        acknowledgement, as `AsyncClient.publish()` does: with the same event id
        on every attempt, the same retries and the same errors."""
        publishing, request = self._publishing(category, data, event_id)
        while True:
            try:
                return publishing.acknowledged(_send(self.settings, self._http, request))
            except ClientError as error:
                wait = publishing.retry_after(error)
                if wait is None or self._closed:
                    raise
            time.sleep(wait)

    def close(self) -> None:
        """Stop every subscription (see `EventStream.stop()`) and close the connections."""
        streams = self._closing()
        if streams is None:
            return
        for stream in streams:
            stream.close()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _new_http(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        if transport is not None:
            return httpx.Client(transport=transport, timeout=_core.REQUEST_TIMEOUT_SECONDS)
        if self._ssl_context is None:  # one for all: making one takes tens of milliseconds
            self._ssl_context = httpx.create_ssl_context()
        return httpx.Client(verify=self._ssl_context, timeout=_core.REQUEST_TIMEOUT_SECONDS)

    def _new_stream(self, state: StreamState, streaming: bool) -> EventStream:
        private = not self._shared_connections
        http = self._new_http(None) if private else self._http
        return EventStream(state, http, private, streaming)


class EventStream(BaseEventStream):
    """The events of a subscription, oldest first: `for event in stream:`.

    It resumes from the last event it yielded across timeouts, failures and
    reconnections, so no event is missed or repeated while the server still
    buffers the position. `since_time` and `last_id` are that position: pass
    them to `subscribe()` to continue later.

    `stop()`, from any thread, ends the iteration and the poll in flight at once:
    it shuts down the sockets of the stream's connections, which wakes the
    blocked read. With a caller's `http_client` or `transport`, connections are
    shared, so only a connection opened for the poll in flight is shut down; a
    poll over a reused connection then ends with its answer. `close()` and the
    end of a `with` block stop it too. Leaving the loop leaves no poll in
    flight (a stream of `Client.stream()` stays open until `close()`); the
    stream's connections are closed when it is garbage-collected.
    """

    def __init__(
        self, state: StreamState, http: httpx.Client, private: bool, streaming: bool = False
    ) -> None:
        super().__init__(state)
        self._http = http
        self._streaming = streaming
        self._stopped = threading.Event()
        self._sockets = _Sockets(keep=private)
        self._close_connections: Callable[[], object] = (
            weakref.finalize(self, http.close) if private else _nothing
        )
        self._response: httpx.Response | None = None  # the open stream's
        self._chunks: Iterator[bytes] | None = None
        self._response_lock = threading.Lock()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> ReceivedEvent:
        try:
            while not self._pending:
                if self._stopped.is_set():
                    raise StopIteration
                wait = self._state.wait_seconds
                if wait > 0 and self._stopped.wait(wait):
                    continue
                try:
                    events = self._step()
                except ClientError as error:
                    if not self._stopped.is_set():
                        self._state.failed(error)
                    continue
                if self._stopped.is_set():  # stopped as the step ended: not yielded
                    raise StopIteration
                self._pending.extend(events)
        except BaseException:
            self.stop()
            self._end_response()
            self._close_connections()
            raise
        return self._yield_pending()

    def _step(self) -> list[ReceivedEvent]:
        """One poll, or one read of the stream; none if the stream was stopped first."""
        if not self._sockets.poll_started():
            return []
        try:
            return self._read_stream() if self._streaming else self._poll()
        finally:
            self._sockets.poll_ended(connection_open=self._response is not None)

    def _poll(self) -> list[ReceivedEvent]:
        state = self._state
        response = _send(state.settings, self._http, self._traced(state.poll_request))
        return state.received(response.status_code, response.content, response.reason_phrase)

    def _read_stream(self) -> list[ReceivedEvent]:
        """The events of the stream's next bytes, opened first if need be; none
        when it ended."""
        state = self._state
        response = self._response
        if response is None:
            response = self._response = self._open_stream()
            self._chunks = response.iter_bytes()
        assert self._chunks is not None
        try:
            for chunk in self._chunks:
                events = state.stream_received(chunk)
                if events:
                    return events
            self._end_response()
            state.stream_ended()
            return []
        except BaseException as exc:
            self._end_response()
            if isinstance(exc, httpx.HTTPError):
                raise _core.stream_broke(exc, response.url) from exc
            raise

    def _open_stream(self) -> httpx.Response:
        state = self._state
        response = _send(
            state.settings, self._http, self._traced(state.stream_request), stream=True
        )
        if state.stream_opened(response.status_code, response.headers.get("content-type", "")):
            return response
        try:
            body = response.read()
        except httpx.HTTPError as exc:
            raise _core.connection_failed(exc, response.url) from exc
        finally:
            response.close()
        state.refused(response.status_code, body, response.reason_phrase)

    def _traced(self, build: Callable[..., httpx.Request]) -> Callable[[object], httpx.Request]:
        """The request `build` makes for a token, traced to find its sockets."""
        http, trace = self._http, self._sockets.trace
        return lambda token: build(http, token, trace=trace)

    def _end_response(self) -> None:
        with self._response_lock:
            response, self._response, self._chunks = self._response, None, None
        if response is not None:
            response.close()

    def stop(self) -> None:
        """End the stream from any thread: the iteration ends, a poll in flight at once."""
        self._stopped.set()
        self._sockets.shut_down()

    def close(self) -> None:
        """`stop()`, and close the stream's response and own connections unless a
        step is ending on them (the iterating thread closes them then)."""
        self._stopped.set()
        if not self._sockets.shut_down():
            self._end_response()
            self._close_connections()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Sockets:
    """The sockets of a stream's connections, found through httpx's `trace` extension.

    With `keep`, the connections are the stream's own and their sockets are kept
    while open; otherwise only those opened during the poll in flight are known.
    """

    def __init__(self, keep: bool) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._shut_down = False
        self._polling = False

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        """httpx's trace callback: note the socket of each connection opened."""
        if not name.endswith(".complete"):
            return
        get_extra_info = getattr(info.get("return_value"), "get_extra_info", None)
        sock = get_extra_info("socket") if get_extra_info is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            shut_down = self._shut_down
        if shut_down:
            _shut_down(sock)

    def poll_started(self) -> bool:
        """Note that a poll starts; False if the sockets are shut down (no poll then)."""
        with self._lock:
            if self._shut_down:
                return False
            self._polling = True
            self._sockets = [sock for sock in self._sockets if sock.fileno() != -1]
            return True

    def poll_ended(self, connection_open: bool = False) -> None:
        """Note that a poll ended; with `connection_open`, a stream on its connection
        did not, so its sockets stay known."""
        with self._lock:
            self._polling = False
            if not (self._keep or connection_open):
                self._sockets.clear()

    def shut_down(self) -> bool:
        """Shut down every known socket, and any opened from now on.

        Returns whether a poll is in flight (it will end, without a new one after it).
        """
        with self._lock:
            self._shut_down = True
            sockets = list(self._sockets)
            polling = self._polling
        for sock in sockets:
            _shut_down(sock)
        return polling


def _send(
    settings: Settings,
    http: httpx.Client,
    request: Callable[[object], httpx.Request],
    *,
    stream: bool = False,
) -> httpx.Response:
    """Send the request `request(token)` makes with the current token, once more
    with a fresh one after a 401 if the token provider may renew it. With
    `stream`, the answer's body is left to read."""
    response = _send_once(settings, http, request, stream)
    if settings.renews_token(response.status_code):
        response.close()
        response = _send_once(settings, http, request, stream)
    return response


def _send_once(
    settings: Settings,
    http: httpx.Client,
    request: Callable[[object], httpx.Request],
    stream: bool,
) -> httpx.Response:
    built = request(_current_token(settings))
    try:
        return http.send(built, stream=stream)
    except httpx.HTTPError as exc:
        raise _core.connection_failed(exc, built.url) from exc


def _current_token(settings: Settings) -> object:
    """What the token provider gives for the next request (None without one)."""
    provider = settings.token_provider
    if provider is None:
        return None
    return provider()


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed, or never connected
        sock.shutdown(socket.SHUT_RDWR)


def _nothing() -> None:
    pass
