"""Server-Sent Events on the subscribe path, on both servers and both backends."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.redis_server import RedisServer
from longpoll import LongpollApp, LongpollManager, MemoryBackend, Options
from tests.conftest import ServerFactory
from tests.servers import (
    RunningServer,
    http_client,
    serve_app,
    serve_process,
    wait_for_waiters,
)
from tests.sse import Frame, RawStream, open_stream


def category() -> str:
    return f"sse-{uuid.uuid4().hex[:8]}"


async def publish(http: httpx.AsyncClient, name: str, data: object) -> dict[str, object]:
    response = await http.post("/publish", json={"category": name, "data": data})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def event_json(name: str, data: object, answer: dict[str, object]) -> bytes:
    """The event's JSON as the server encodes it, from the publish answer."""
    event = {"timestamp": answer["timestamp"], "category": name, "data": data, "id": answer["id"]}
    return orjson.dumps(event)


def position(answer: dict[str, object]) -> str:
    return f"{answer['timestamp']}:{answer['id']}"


def data_of(frames: list[Frame]) -> list[object]:
    return [orjson.loads(frame.get("data") or "")["data"] for frame in frames]


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(server.url) as client:
        yield client


async def test_a_stream_sends_each_event_framed_byte_for_byte(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    name = category()
    async with open_stream(server.url, f"/events?category={name}") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-cache, no-store, no-transform"
        assert stream.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in stream.headers
        assert "content-length" not in stream.headers
        assert stream.chunked
        opening = await stream.frame()
        assert opening is not None and opening.raw == b"retry: 2000\n\n"
        start = await stream.frame()
        assert start is not None and start.fields == [("id", start.get("id"))]
        await wait_for_waiters(server.manager, 1)
        first = await publish(http, name, {"n": 1, "text": "two\nlines"})
        second = await publish(http, name, "plain")
        frames = await stream.events(2)
    assert frames[0].raw == b"id: %b\nevent: %b\ndata: %b\n\n" % (
        position(first).encode(),
        name.encode(),
        event_json(name, {"n": 1, "text": "two\nlines"}, first),
    )
    assert frames[1].raw == b"id: %b\nevent: %b\ndata: %b\n\n" % (
        position(second).encode(),
        name.encode(),
        event_json(name, "plain", second),
    )


async def test_several_categories_merge_in_publish_order(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    a, b = category(), category()
    async with open_stream(server.url, f"/events?category={a}&category={b}") as stream:
        await wait_for_waiters(server.manager, 1)
        for n in range(6):
            await publish(http, (a, b)[n % 2], n)
        frames = await stream.events(6)
    assert data_of(frames) == list(range(6))
    assert [frame.get("event") for frame in frames] == [a, b] * 3


async def test_last_event_id_resumes_exactly_after_the_event(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    name = category()
    async with open_stream(server.url, f"/events?category={name}") as stream:
        await wait_for_waiters(server.manager, 1)
        for n in range(3):
            await publish(http, name, n)
        seen = await stream.events(2)
    last = seen[-1].get("id")
    assert last is not None
    for n in range(3, 5):
        await publish(http, name, n)
    # The query's since_time is what a browser sends again on reconnecting: the
    # header wins over it.
    target = f"/events?category={name}&since_time=-1"
    async with open_stream(server.url, target, {"Last-Event-ID": last}) as stream:
        frames = await stream.events(3)
    assert data_of(frames) == [2, 3, 4]


async def test_a_stream_without_a_position_first_sends_a_safe_one(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    name = category()
    before = await publish(http, name, "before")
    async with open_stream(server.url, f"/events?category={name}") as stream:
        await stream.frame()  # retry
        start = await stream.frame()
    assert start is not None
    point = start.get("id")
    assert point is not None and ":" not in point
    assert int(point) >= int(str(before["timestamp"]))
    # Published after the stream left and before it came back: not lost.
    await publish(http, name, "meanwhile")
    async with open_stream(
        server.url, f"/events?category={name}", {"Last-Event-ID": point}
    ) as stream:
        frames = await stream.events(1)
        await publish(http, name, "after")
        frames += await stream.events(1)
    assert data_of(frames) == ["meanwhile", "after"]


async def test_a_gap_is_its_own_event_before_the_events_after_it(
    make_server: ServerFactory,
) -> None:
    name = category()
    async with (
        make_server(Options(max_event_buffer_size=2)) as server,
        http_client(server.url) as http,
    ):
        first = await publish(http, name, 0)
        for n in range(1, 5):
            await publish(http, name, n)
        headers = {"Last-Event-ID": position(first)}
        async with open_stream(server.url, f"/events?category={name}", headers) as stream:
            await stream.frame()  # retry
            missed = await stream.frame()
            frames = await stream.events(2)
    assert missed is not None and missed.raw == b'event: missed\ndata: {"missed":true}\n\n'
    assert data_of(frames) == [3, 4]


async def test_a_bad_last_event_id_is_refused(server: RunningServer) -> None:
    name = category()
    for bad in ("junk", "12:not-a-uuid", "1" * 30, "-"):
        async with open_stream(
            server.url, f"/events?category={name}", {"Last-Event-ID": bad}
        ) as stream:
            assert stream.status == 400
            body = await stream.reader.read(200)
            assert b"Last-Event-ID must be an event id this server sent" in body


async def test_stream_checks_the_query_like_a_poll(server: RunningServer) -> None:
    async with open_stream(server.url, "/events?timeout=5") as stream:
        assert stream.status == 400
        assert b"category is required" in await stream.reader.read(200)
    async with open_stream(server.url, f"/events?category={category()}&timeout=0") as stream:
        assert stream.status == 400


async def test_a_category_that_cannot_stand_in_a_field_keeps_the_default_type(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    name = "line\nbreak"
    async with open_stream(server.url, "/events?category=line%0Abreak") as stream:
        await wait_for_waiters(server.manager, 1)
        await publish(http, name, 1)
        (frame,) = await stream.events(1)
    assert frame.get("event") is None
    assert orjson.loads(frame.get("data") or "")["category"] == name


async def test_heartbeats_keep_an_idle_stream_alive(portable: bool) -> None:
    manager = LongpollManager(backend=MemoryBackend())
    app = LongpollApp(manager, stream_heartbeat_seconds=0.2)
    async with (
        serve_app(app, portable=portable) as server,
        open_stream(server.url, f"/events?category={category()}") as stream,
    ):
        comments: list[bytes] = []
        while len(comments) < 2:
            frame = await stream.frame(seconds=5)
            assert frame is not None
            if frame.is_comment:
                comments.append(frame.raw)
    assert comments == [b": keep-alive\n\n"] * 2


async def test_a_stream_path_streams_whatever_the_request_accepts(
    portable: bool,
) -> None:
    manager = LongpollManager(backend=MemoryBackend())
    app = LongpollApp(manager, stream_path="/stream")
    async with serve_app(app, portable=portable) as server, http_client(server.url) as http:
        name = category()
        async with http.stream("GET", "/stream", params={"category": name}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            await wait_for_waiters(manager, 1)
            await publish(http, name, "x")
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("data: "):
                        assert orjson.loads(line[6:])["data"] == "x"
                        break


async def test_shutdown_ends_a_stream_cleanly(make_server: ServerFactory) -> None:
    async with (
        make_server() as server,
        open_stream(server.url, f"/events?category={category()}") as stream,
    ):
        await wait_for_waiters(server.manager, 1)
        server.manager.begin_shutdown()
        while await stream.frame() is not None:
            pass
        assert stream.ended  # the last chunk came: a clean end, not a cut
        await wait_for_waiters(server.manager, 0)


async def test_a_client_that_does_not_read_is_cut_off(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    name = category()
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /events?category={name} HTTP/1.1\r\nHost: x\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    try:
        await wait_for_waiters(server.manager, 1)
        big = "x" * 65536
        # 16 MiB published: far more than the socket buffers and the 1 MiB the
        # server keeps unsent for one client.
        for _ in range(256):
            await publish(http, name, big)
            if server.manager.waiting == 0:
                break
        await wait_for_waiters(server.manager, 0)
        # What the client can still read is what the server held when it gave up.
        received = await asyncio.wait_for(asyncio.to_thread(read_to_end, sock), 10)
    finally:
        sock.close()
    assert received < 4 * 1024 * 1024


def read_to_end(sock: socket.socket) -> int:
    """Read until the server closes or resets the connection; the bytes read."""
    size = 0
    try:
        while chunk := sock.recv(65536):
            size += len(chunk)
    except ConnectionResetError:
        pass
    return size


async def test_http_1_0_gets_a_stream_that_ends_with_the_connection(
    make_server: ServerFactory,
) -> None:
    async with make_server(portable=False) as server, http_client(server.url) as http:
        name = category()
        async with open_stream(server.url, f"/events?category={name}", version="1.0") as stream:
            assert stream.status == 200
            assert not stream.chunked
            assert stream.headers.get("connection") == "close"
            await wait_for_waiters(server.manager, 1)
            await publish(http, name, 1)
            assert data_of(await stream.events(1)) == [1]


async def test_delete_after_first_retrieval_deletes_what_a_stream_sent(
    make_server: ServerFactory,
) -> None:
    options = Options(delete_event_after_first_retrieval=True)
    async with make_server(options) as server, http_client(server.url) as http:
        name = category()
        async with open_stream(server.url, f"/events?category={name}") as stream:
            await wait_for_waiters(server.manager, 1)
            await publish(http, name, 1)
            await stream.events(1)
        async with asyncio.timeout(10):
            while (await server.manager.stats()).buffered_events:
                await asyncio.sleep(0.01)


class ModelClient:
    """A subscriber that switches between a stream and long polls, always resuming
    from the last event it took (or the position a stream gave it)."""

    def __init__(self, url: str, categories: list[str]) -> None:
        self.url = url
        self.query = "&".join(f"category={name}" for name in categories)
        self.position: str | None = None  # as a stream's id: "ts" or "ts:uuid"
        self.received: list[object] = []
        self.stream: RawStream | None = None
        self._opened: contextlib.AbstractAsyncContextManager[RawStream] | None = None

    async def open_stream(self) -> None:
        headers = {} if self.position is None else {"Last-Event-ID": self.position}
        self._opened = open_stream(self.url, f"/events?{self.query}", headers)
        self.stream = await self._opened.__aenter__()
        assert self.stream.status == 200
        if self.position is None:
            while self.position is None:  # the stream's starting point
                frame = await self.stream.frame()
                assert frame is not None
                self.position = frame.get("id")

    async def close_stream(self) -> None:
        if self._opened is not None:
            await self._opened.__aexit__(None, None, None)
        self.stream = self._opened = None

    async def take(self, count: int, http: httpx.AsyncClient) -> None:
        """Take `count` events (the model knows they are there)."""
        if self.stream is not None:
            while count:
                frame = await self.stream.frame()
                assert frame is not None
                assert frame.get("event") != "missed", frame
                data = frame.get("data")
                if data is None:
                    continue  # retry:, a comment
                self.received.append(orjson.loads(data)["data"])
                self.position = frame.get("id")
                count -= 1
            return
        assert self.position is not None
        since, _, last = self.position.partition(":")
        query = f"{self.query}&timeout=5&since_time={since}&last_id={last}"
        answer = (await http.get(f"/events?{query}")).json()
        assert answer.get("events"), answer
        assert not answer.get("missed")
        for event in answer["events"]:
            self.received.append(event["data"])
            self.position = f"{event['timestamp']}:{event['id']}"


operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(0, 1), st.integers(1, 3)),
        st.tuples(st.just("take"), st.integers(1, 4)),
        st.tuples(st.just("reconnect")),
        st.tuples(st.just("switch")),
    ),
    max_size=12,
)


async def test_switching_and_reconnecting_loses_and_repeats_nothing(
    server: RunningServer,
) -> None:
    loop = asyncio.get_running_loop()
    checked = 0

    async def run_ops(ops: list[tuple[Any, ...]]) -> None:
        nonlocal checked
        names = [category(), category()]
        published: list[object] = []
        client = ModelClient(server.url, names)
        async with http_client(server.url) as http:
            await client.open_stream()
            try:
                for op in ops:
                    if op[0] == "publish":
                        for _ in range(op[2]):
                            published.append(len(published))
                            await publish(http, names[op[1]], published[-1])
                    elif op[0] == "take":
                        unread = len(published) - len(client.received)
                        if unread:
                            await client.take(min(op[1], unread), http)
                    elif op[0] == "reconnect" and client.stream is not None:
                        await client.close_stream()
                        await client.open_stream()
                    elif op[0] == "switch":
                        if client.stream is None:
                            await client.open_stream()
                        else:
                            await client.close_stream()
                    assert client.received == published[: len(client.received)]
                while len(client.received) < len(published):
                    await client.take(1, http)
                assert client.received == published
                checked += 1
            finally:
                await client.close_stream()

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(operations)
    def run(ops: list[tuple[Any, ...]]) -> None:
        asyncio.run_coroutine_threadsafe(run_ops(ops), loop).result(60)

    await asyncio.to_thread(run)
    assert checked >= 20


async def test_streams_on_two_redis_workers_get_every_event_once(
    redis_server: RedisServer,
) -> None:
    flags = ["--redis", redis_server.url, "--redis-prefix", "sse-workers", "--workers", "2"]
    name = category()
    with serve_process(*flags) as server:
        async with asyncio.timeout(60):
            # Many streams, so that the kernel hands some to each worker.
            async with contextlib.AsyncExitStack() as streams:
                opened = [
                    await streams.enter_async_context(
                        open_stream(server.url, f"/events?category={name}")
                    )
                    for _ in range(8)
                ]
                starts = [await first_position(stream) for stream in opened]
                published = []
                for n in range(20):
                    # A new connection each time: the publishes go to both workers.
                    async with http_client(server.url) as http:
                        published.append(await publish(http, name, n))
                for stream in opened:
                    assert data_of(await stream.events(20)) == list(range(20))
            # Resuming from the middle, on whichever worker takes the connection.
            middle = position(published[9])
            for _ in range(4):
                headers = {"Last-Event-ID": middle}
                async with open_stream(server.url, f"/events?category={name}", headers) as stream:
                    assert data_of(await stream.events(10)) == list(range(10, 20))
            # And from a stream's starting point: everything.
            async with open_stream(
                server.url, f"/events?category={name}", {"Last-Event-ID": starts[0]}
            ) as stream:
                assert data_of(await stream.events(20)) == list(range(20))
        code, output = server.stop(signal.SIGTERM)
    assert code == 0, output
    assert "Traceback" not in output


async def first_position(stream: RawStream) -> str:
    """The position a stream that started without one announces."""
    while True:
        frame = await stream.frame()
        assert frame is not None
        if frame.get("id") is not None:
            return str(frame.get("id"))
