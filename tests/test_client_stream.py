"""`AsyncClient.stream()` and `Client.stream()`: the events over Server-Sent Events,
against real servers on loopback ports (and the parser and core, pure)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from bench.redis_server import RedisServer
from longpoll import (
    ClientError,
    ConnectionFailed,
    LongpollApp,
    LongpollManager,
    Options,
    ProtocolError,
    ServerError,
)
from longpoll.backends.redis import RedisBackend
from longpoll.client import Client, ReceivedEvent, _core
from longpoll.client._sse import Frame, SseParser
from longpoll.server import bind_socket, running
from longpoll.types import Message, Receive, Scope, Send
from tests.conftest import ServerFactory
from tests.servers import RunningServer, serve_app, serve_process, wait_for_waiters
from tests.test_cli_client import Subscriber, run_cli, wait_for_subscribers
from tests.test_client import async_client, event_json, state, sync_client, within

# --- the parser ------------------------------------------------------------------------


def parse(*chunks: bytes) -> list[Frame]:
    parser = SseParser()
    return [frame for chunk in chunks for frame in parser.feed(chunk)]


def test_parser_follows_the_whatwg_rules() -> None:
    stream = (
        b"\xef\xbb\xbfretry: 2000\n\n"
        b": a comment\n"
        b"id: 1\n\n"
        b'id: 2:x\nevent: news\ndata: {"a":\ndata:  1}\n\n'
        b"data\nunknown: field\nid: bad\0id\n\n"
        b"event: missed\r\ndata: {}\r\n\r\n"
        b"data: last\rid\r\r"
        b"data: never finished\n"
    )
    expected = [
        Frame("message", None, "1"),
        Frame("news", '{"a":\n 1}', "2:x"),
        Frame("message", "", None),
        Frame("missed", "{}", None),
        Frame("message", "last", ""),
    ]
    assert parse(stream) == expected
    # The same bytes one at a time: CR LF split across chunks is one line end.
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == expected
    parser = SseParser()
    parser.feed(b"retry: 1500\nretry: soon\n\n")
    assert parser.retry_milliseconds == 1500


def test_parser_splits_lines_at_any_chunk_boundary() -> None:
    stream = b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"
    frames = [Frame("message", data, None) for data in "abc"]
    for cut in range(len(stream) + 1):
        assert parse(stream[:cut], stream[cut:]) == frames, cut


# --- the core ----------------------------------------------------------------------------


def frame(event: dict[str, Any]) -> bytes:
    return b"id: %d:%s\nevent: a\ndata: %b\n\n" % (
        event["timestamp"],
        event["id"].encode(),
        orjson.dumps(event),
    )


def test_core_stream_position_gap_and_duplicates() -> None:
    stream = state()
    assert stream.stream_opened(200, "text/event-stream; charset=utf-8")
    assert stream.stream_received(b"retry: 2000\n\nid: 7\n\n: keep-alive\n\n") == []
    assert (stream.since_time, stream.last_id) == (7, None)
    first, second = uuid.uuid4(), uuid.uuid4()
    events = stream.stream_received(
        b'event: missed\ndata: {"missed":true}\n\n' + frame(event_json(9, first))[:-5]
    )
    assert events == []  # the frame is not finished
    events = stream.stream_received(frame(event_json(9, first))[-5:] + frame(event_json(9, second)))
    assert [(event.id, event.after_gap) for event in events] == [(first, True), (second, False)]
    for event in events:
        stream.advance(event)
    headers = stream.stream_request(httpx.Client(), None).headers
    assert headers["last-event-id"] == f"9:{second}"
    assert headers["accept"] == "text/event-stream"
    # A new stream that sends the same millisecond again causes no duplicate.
    assert stream.stream_opened(200, "text/event-stream")
    third = uuid.uuid4()
    again = b"".join(frame(event_json(9, event_id)) for event_id in (first, second, third))
    assert [event.id for event in stream.stream_received(again)] == [third]


def test_core_stream_request_resumes_from_the_position() -> None:
    http = httpx.Client()
    assert "last-event-id" not in state().stream_request(http, None).headers
    request = state(since_time=-1).stream_request(http, None)
    assert str(request.url) == "http://h/events?token=t&category=a&category=b"
    assert request.headers["last-event-id"] == "-1"
    assert request.extensions["timeout"]["read"] == _core.STREAM_IDLE_SECONDS


@pytest.mark.parametrize(
    ("status", "content_type", "body", "error", "message"),
    [
        (400, "application/json", b'{"error":"category is required"}', ServerError, "400: cat"),
        (503, "text/html", b"<html>down</html>", ServerError, "503: reason, not JSON"),
        (200, "application/json", b'{"error":"Invalid timeout arg."}', ServerError, "200: Inv"),
        (200, "application/json", b'{"timeout":"no events"}', ProtocolError, "not a Server-Sent"),
        (200, "text/html", b"<html>hi</html>", ProtocolError, "not a Server-Sent"),
    ],
)
def test_core_answers_that_open_no_stream(
    status: int, content_type: str, body: bytes, error: type[ClientError], message: str
) -> None:
    stream = state()
    assert not stream.stream_opened(status, content_type)
    with pytest.raises(error, match=re.escape(message)):
        stream.refused(status, body, "reason")


def test_core_stream_errors() -> None:
    stream = state()
    assert stream.stream_opened(200, "text/event-stream")
    with pytest.raises(ConnectionFailed, match="before it sent anything"):
        stream.stream_ended()
    with pytest.raises(ProtocolError, match="not JSON"):
        stream.stream_received(b"data: {oops\n\n")
    with pytest.raises(ProtocolError, match="not a position"):
        stream.stream_received(b"id: yesterday\n\n")
    stream.stream_ended()  # it sent something: a clean end


# --- helpers -----------------------------------------------------------------------------


@dataclass
class Consumer:
    """A stream consumed by a task (async) or a thread (sync) until it has `count` events."""

    received: list[ReceivedEvent]
    task: asyncio.Future[None]

    async def until(self, count: int, seconds: float = 10) -> None:
        async with asyncio.timeout(seconds):
            while len(self.received) < count:
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def consuming(
    flavour: str, url: str, *categories: str, count: int, since: Any = "now", **options: Any
) -> AsyncIterator[Consumer]:
    received: list[ReceivedEvent] = []
    if flavour == "async":
        client = async_client(url, **options)

        async def consume() -> None:
            async with client.stream(*categories, since=since) as events:
                async for event in events:
                    received.append(event)
                    if len(received) == count:
                        return

        task: asyncio.Future[None] = asyncio.ensure_future(consume())
        try:
            yield Consumer(received, task)
        finally:
            await client.aclose()
            await within(5, task)
        return
    sync = sync_client(url, **options)

    def consume_sync() -> None:
        with sync.stream(*categories, since=since) as events:
            for event in events:
                received.append(event)
                if len(received) == count:
                    return

    task = asyncio.ensure_future(asyncio.to_thread(consume_sync))
    try:
        yield Consumer(received, task)
    finally:
        await asyncio.to_thread(sync.close)
        await within(5, task)


def retrying(failures: list[ClientError]) -> Callable[[ClientError], bool]:
    """An `on_failure` that notes each failure in `failures` and retries."""

    def on_failure(error: ClientError) -> bool:
        failures.append(error)
        return True

    return on_failure


def position(event: ReceivedEvent) -> str:
    return f"{event.timestamp}:{event.id}"


class CuttingProxy:
    """A TCP proxy on a free loopback port in front of the server at `target`, whose
    connections `cut()` breaks as a crash or the network would. It notes the
    `Last-Event-ID` of each request that passes (None for a request without one)."""

    def __init__(self, target: str) -> None:
        self._target = httpx.URL(target)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last_event_ids: list[str | None] = []
        self.url = ""

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        self.cut()
        await within(5, asyncio.gather(*self._tasks, return_exceptions=True))

    def cut(self) -> int:
        """Break every connection through the proxy; returns how many."""
        writers, self._writers = self._writers, set()
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream = await asyncio.open_connection(self._target.host, self._target.port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream[1]}
        await asyncio.gather(
            self._pipe(reader, upstream[1], note=True),
            self._pipe(upstream[0], writer, note=False),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, note: bool
    ) -> None:
        heads = b""
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if note:
                    heads += data
                    while b"\r\n\r\n" in heads:
                        head, _, heads = heads.partition(b"\r\n\r\n")
                        found = re.search(rb"(?im)^last-event-id: *([^\r]*)", head)
                        self.last_event_ids.append(found[1].decode() if found else None)
                writer.write(data)
                await writer.drain()
        writer.close()


class EndingGate:
    """ASGI middleware in front of `app`'s stream requests: it answers 401 to the
    tokens in `refused`, notes each request's token and `Last-Event-ID`, and ends
    each stream cleanly after `events_per_stream` events, halfway into the next
    frame when the same write holds more."""

    def __init__(self, app: LongpollApp, refused: set[str], events_per_stream: int) -> None:
        self.app = app
        self.refused = refused
        self.events_per_stream = events_per_stream
        self.seen: list[tuple[str | None, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/events":
            await self.app(scope, receive, send)
            return
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        token = headers.get("authorization")
        self.seen.append((token, headers.get("last-event-id")))
        if token is not None and token.removeprefix("Bearer ") in self.refused:
            start = {"type": "http.response.start", "status": 401, "headers": []}
            await send(start)
            await send({"type": "http.response.body", "body": b'{"error":"expired"}'})
            return
        sent = 0

        async def ending_send(message: Message) -> None:
            nonlocal sent
            body = message.get("body", b"")
            events = list(re.finditer(rb"id: \d+:.*?\n\n", body, re.DOTALL))
            if message["type"] != "http.response.body" or sent + len(events) < (
                self.events_per_stream
            ):
                sent += len(events)
                await send(message)
                return
            last = self.events_per_stream - sent - 1
            end = events[last].end()
            if last + 1 < len(events):
                end = (end + events[last + 1].end()) // 2
            await send({"type": "http.response.body", "body": body[:end], "more_body": False})
            raise _Ended

        with contextlib.suppress(_Ended):
            await self.app(scope, receive, ending_send)


class _Ended(Exception):
    pass


# --- delivery ----------------------------------------------------------------------------


async def test_events_in_order_across_categories(server: RunningServer) -> None:
    count = 300
    async with async_client(server.url) as client:
        stream = client.stream("a", "b", "c")
        received: list[ReceivedEvent] = []

        async def consume() -> None:
            async for event in stream:
                received.append(event)
                if len(received) == count:
                    return

        consumer = asyncio.create_task(consume())
        await wait_for_waiters(server.manager, 1)
        ids = []
        for start in range(0, count, 30):
            for number in range(start, start + 30):
                ids.append((await server.manager.publish("abc"[number % 3], number)).id)
            await asyncio.sleep(0.002)
        await within(10, consumer)
        assert (stream.since_time, stream.last_id) == (received[-1].timestamp, ids[-1])
        await stream.aclose()
        await wait_for_waiters(server.manager, 0)
    assert [event.data for event in received] == list(range(count))
    assert [event.id for event in received] == ids
    assert [event.category for event in received[:4]] == ["a", "b", "c", "a"]
    assert not any(event.after_gap for event in received)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_resume_exactly_after_cut_connections(server: RunningServer, flavour: str) -> None:
    """Connections cut while events flow, and events published while the client is
    away: each reconnect resumes after the last event received, so nothing is missed
    or repeated."""
    failures: list[ClientError] = []
    ids: list[uuid.UUID] = []

    async def publish(count: int) -> None:
        for _ in range(count):
            ids.append((await server.manager.publish("ab"[len(ids) % 2], len(ids))).id)

    async with (
        CuttingProxy(server.url) as proxy,
        consuming(flavour, proxy.url, "a", "b", count=340, on_failure=retrying(failures)) as c,
    ):
        await wait_for_waiters(server.manager, 1)
        for _ in range(4):
            for _ in range(3):
                await publish(20)
                await asyncio.sleep(0.003)
            requests = len(proxy.last_event_ids)
            assert proxy.cut() == 1
            await publish(20)
            async with asyncio.timeout(5):
                while len(proxy.last_event_ids) == requests:
                    await asyncio.sleep(0.002)
        await publish(20)
        await c.until(340)
    assert [event.data for event in c.received] == list(range(340))
    assert [event.id for event in c.received] == ids
    assert not any(event.after_gap for event in c.received)
    assert len(failures) >= 4 and all(isinstance(e, ConnectionFailed) for e in failures)
    # Every reconnect named a position: the last event received before it (or, if
    # none had come yet, the resume point the stream began with).
    positions = {position(event) for event in c.received}
    assert proxy.last_event_ids[0] is None
    resumed = proxy.last_event_ids[1:]
    assert len(resumed) >= 4
    assert all(value is not None and (value in positions or value.isdigit()) for value in resumed)


async def test_resume_from_a_position_given(server: RunningServer) -> None:
    events = [await server.manager.publish("c", number) for number in range(5)]
    async with async_client(server.url) as client:
        after_two = client.stream("c", since=events[2].timestamp, last_id=events[2].id)
        assert (after_two.since_time, after_two.last_id) == (events[2].timestamp, events[2].id)
        assert [(await within(5, anext(after_two))).data for _ in range(2)] == [3, 4]
        everything = client.stream("c", since=-1)
        assert [(await within(5, anext(everything))).data for _ in range(5)] == list(range(5))
        # Going on from another stream's position: only what comes next.
        going_on = client.stream("c", since=everything.since_time or 0, last_id=everything.last_id)
        consumer = asyncio.create_task(anext(going_on))
        await wait_for_waiters(server.manager, 3)
        await client.publish("c", "next")
        assert (await within(5, consumer)).data == "next"
        for stream in (after_two, everything, going_on):
            await stream.aclose()


async def test_gap_flag(make_server: ServerFactory) -> None:
    async with make_server(Options(max_event_buffer_size=5)) as server:
        events = [await server.manager.publish("c", number) for number in range(10)]
        async with async_client(server.url) as client:
            # The position is event 0; events 1 to 4 were dropped from the buffer.
            stream = client.stream("c", since=events[0].timestamp, last_id=events[0].id)
            received = [await within(5, anext(stream)) for _ in range(5)]
            await stream.aclose()
    assert [event.data for event in received] == [5, 6, 7, 8, 9]
    assert [event.after_gap for event in received] == [True, False, False, False, False]


async def test_sync_stream_in_order_and_stopped_from_another_thread(
    server: RunningServer,
) -> None:
    for number in range(3):
        await server.manager.publish("c", number)

    def run() -> tuple[list[Any], list[ReceivedEvent], float]:
        with sync_client(server.url) as client:
            stream = client.stream("c", since=-1)
            first = [next(stream).data for _ in range(3)]
            timer = threading.Timer(0.3, stream.stop)
            timer.start()
            started = time.monotonic()
            rest = list(stream)
            timer.join()
            return first, rest, time.monotonic() - started

    first, rest, waited = await within(5, asyncio.to_thread(run))
    assert first == [0, 1, 2] and rest == []
    assert waited < 1
    await wait_for_waiters(server.manager, 0)


# --- ends of streams, tokens, idle connections ---------------------------------------------


async def test_token_per_connect_renewal_and_clean_ends() -> None:
    """Each (re)connect asks the provider for a token; a 401 gets one more at once;
    a stream that ends cleanly, even mid-frame, resumes after its last whole event."""
    manager = LongpollManager()
    gate = EndingGate(LongpollApp(manager), refused={"t1"}, events_per_stream=3)
    numbers = itertools.count(1)
    failures: list[ClientError] = []
    async with serve_app(gate, manager) as server:
        published = [await manager.publish("c", number) for number in range(9)]
        options: dict[str, Any] = {
            "token": lambda: f"t{next(numbers)}",
            "on_failure": retrying(failures),
        }
        async with consuming("async", server.url, "c", count=10, since=-1, **options) as consumer:
            await consumer.until(9)
            async with asyncio.timeout(5):
                while len(gate.seen) < 5:
                    await asyncio.sleep(0.005)
            received = list(consumer.received)
    assert [event.data for event in received] == list(range(9))
    assert [event.id for event in received] == [event.id for event in published]
    assert gate.seen == [
        ("Bearer t1", "-1"),
        ("Bearer t2", "-1"),
        ("Bearer t3", position(received[2])),
        ("Bearer t4", position(received[5])),
        ("Bearer t5", position(received[8])),
    ]
    assert failures == []


async def test_graceful_restart_ends_the_stream_and_it_resumes(redis_server: RedisServer) -> None:
    """A server shutting down ends its streams cleanly; the client reconnects at once,
    is refused until the server is back, then resumes exactly (the events in Redis)."""
    prefix = f"test-{uuid.uuid4().hex}"

    def app() -> LongpollApp:
        return LongpollApp(
            LongpollManager(backend=RedisBackend(redis_server.url, key_prefix=prefix))
        )

    failures: list[ClientError] = []
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    first, second = app(), app()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(sock.close)
        async with running(first, sock):
            consumer = await stack.enter_async_context(
                consuming("async", url, "c", count=30, on_failure=retrying(failures))
            )
            await wait_for_waiters(first.manager, 1)
            for number in range(10):
                await first.manager.publish("c", number)
            await consumer.until(10)
        async with asyncio.timeout(5):
            while not failures:  # reconnecting, refused
                await asyncio.sleep(0.005)
        async with LongpollManager(
            backend=RedisBackend(redis_server.url, key_prefix=prefix)
        ) as meanwhile:
            for number in range(10, 20):
                await meanwhile.publish("c", number)
        again = bind_socket("127.0.0.1", port)
        stack.callback(again.close)
        async with running(second, again):
            await within(10, wait_for_waiters(second.manager, 1))
            for number in range(20, 30):
                await second.manager.publish("c", number)
            await consumer.until(30)
    assert [event.data for event in consumer.received] == list(range(30))
    assert not any(event.after_gap for event in consumer.received)
    # The stream ended cleanly: the failures are refused connections, not a broken stream.
    assert all(str(error).startswith(f"cannot reach {url}/events") for error in failures)


@pytest.mark.parametrize(("heartbeat_seconds", "reopened"), [(30, True), (0.05, False)])
async def test_idle_streams(
    monkeypatch: pytest.MonkeyPatch, heartbeat_seconds: float, reopened: bool
) -> None:
    """A stream that sends nothing for `STREAM_IDLE_SECONDS` is opened again, without
    losing an event; the server's heartbeats keep a stream without events open."""
    monkeypatch.setattr(_core, "STREAM_IDLE_SECONDS", 0.3)
    failures: list[ClientError] = []
    app = LongpollApp(LongpollManager(), stream_heartbeat_seconds=heartbeat_seconds)
    async with (
        serve_app(app) as server,
        consuming("async", server.url, "c", count=1, on_failure=retrying(failures)) as consumer,
    ):
        await wait_for_waiters(server.manager, 1)
        await asyncio.sleep(0.8)
        await wait_for_waiters(server.manager, 1)
        await server.manager.publish("c", "still here")
        await consumer.until(1)
    assert [event.data for event in consumer.received] == ["still here"]
    if reopened:
        assert failures
        assert all(str(error).endswith("/events sent nothing for 0.3 s") for error in failures)
    else:
        assert failures == []


# --- refusals and stopping -----------------------------------------------------------------


async def test_a_refusal_before_the_stream_raises_at_once(make_server: ServerFactory) -> None:
    async with (
        make_server(Options(max_categories_per_request=1)) as server,
        async_client(server.url) as client,
    ):
        with pytest.raises(ServerError) as refused:
            await within(2, anext(client.stream("a", "b")))
    assert refused.value.status == 400


def test_a_server_that_does_not_stream() -> None:
    answers = {
        "/poll-only": b'{"timeout": "no events before timeout", "timestamp": 1}',
        "/golongpoll": b'{"error": "Invalid timeout arg."}',
    }
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json=orjson.loads(answers[request.url.path]))
    )
    with (
        Client("http://h/poll-only", transport=transport) as client,
        pytest.raises(ProtocolError, match="not a Server-Sent Events stream"),
    ):
        next(client.stream("c"))
    with (
        Client("http://h/golongpoll", transport=transport) as client,
        pytest.raises(ServerError, match="Invalid timeout arg"),
    ):
        next(client.stream("c"))


async def test_aclose_and_cancel_end_the_stream_at_once(server: RunningServer) -> None:
    async with async_client(server.url) as client:
        stream = client.stream("c")
        consumer = asyncio.create_task(anext(stream, None))
        await wait_for_waiters(server.manager, 1)
        await within(1, stream.aclose())
        assert await within(1, consumer) is None
        await wait_for_waiters(server.manager, 0)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        task = asyncio.create_task(anext(client.stream("c")))
        await wait_for_waiters(server.manager, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for_waiters(server.manager, 0)
        # Closing the client ends its streams, one between events too.
        await server.manager.publish("c", "x")
        between = client.stream("c", since=-1)
        assert (await within(5, anext(between))).data == "x"
        waiting = asyncio.create_task(anext(client.stream("c"), None))
        await wait_for_waiters(server.manager, 2)
        await within(1, client.aclose())
        assert await within(1, waiting) is None
        await wait_for_waiters(server.manager, 0)


async def test_sync_stop_with_a_callers_http_client(server: RunningServer) -> None:
    """The stream's connection is the caller's: `stop()` still finds its socket
    while it is open between two events."""
    await server.manager.publish("c", 1)

    def run() -> tuple[Any, list[ReceivedEvent]]:
        with httpx.Client() as http, sync_client(server.url, http_client=http) as client:
            stream = client.stream("c", since=-1)
            first = next(stream).data
            timer = threading.Timer(0.3, stream.stop)
            timer.start()
            rest = list(stream)
            timer.join()
            stream.close()
            return first, rest

    assert await within(2, asyncio.to_thread(run)) == (1, [])
    await wait_for_waiters(server.manager, 0)


# --- the command -----------------------------------------------------------------------------


@contextlib.contextmanager
def subscriber(*args: str) -> Iterator[Subscriber]:
    running_subscriber = Subscriber(*args)
    try:
        yield running_subscriber
    finally:
        running_subscriber.stop()


def test_cli_sse_prints_what_polling_prints() -> None:
    with serve_process() as server:
        url = ["--url", server.url]
        for data in ('{"n": 1}', "two"):
            assert run_cli("publish", "a", data, *url).returncode == 0
        with (
            subscriber("a", "b", "--since", "-1", *url) as polling,
            subscriber("a", "b", "--since", "-1", "--sse", *url) as streaming,
        ):
            wait_for_subscribers(server.url, 2)
            assert run_cli("publish", "b", "[3]", *url).returncode == 0
            lines = [
                [polling.lines.get(timeout=10) for _ in range(3)],
                [streaming.lines.get(timeout=10) for _ in range(3)],
            ]
            code, errors = streaming.stop()
    assert lines[0] == lines[1]
    assert [orjson.loads(line)["data"] for line in lines[1]] == [{"n": 1}, "two", [3]]
    assert code == 130
    assert "Traceback" not in errors


def test_cli_sse_without_retry_exits_when_the_server_stops() -> None:
    with serve_process() as server, subscriber("c", "--sse", "--url", server.url) as streaming:
        wait_for_subscribers(server.url, 1)
        assert server.stop()[0] == 0
        assert streaming.process.wait(timeout=10) == 1
        _, errors = streaming.stop()
    assert errors.strip().startswith(f"longpoll: cannot reach {server.url}/events")
    assert len(errors.strip().splitlines()) == 1


def test_cli_help_names_sse() -> None:
    assert "--sse" in run_cli("subscribe", "--help").stdout
