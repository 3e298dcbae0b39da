"""longpoll's own HTTP/1.1 server over raw sockets: framing, limits, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from typing import ClassVar

import orjson
import pytest
import uvloop

from longpoll import LongpollApp, LongpollManager, Options, Subscription
from longpoll.server import ServerLimits
from tests.servers import RunningServer, serve_app, wait_for_waiters

Response = tuple[int, dict[bytes, bytes], bytes]

LIMITS = ServerLimits(
    head_timeout_seconds=0.5,
    keep_alive_timeout_seconds=0.5,
    max_connections=20,
    write_high_water_bytes=64 * 1024,
    grace_seconds=2.0,
)


@contextlib.asynccontextmanager
async def own_server(
    limits: ServerLimits = LIMITS, options: Options | None = None
) -> AsyncIterator[RunningServer]:
    manager = LongpollManager(options or Options(max_publish_body_bytes=1000))
    app = LongpollApp(manager, body_timeout_seconds=0.5)
    async with serve_app(app, limits=limits) as running:
        yield running


@pytest.fixture(autouse=True)
async def close_connections() -> AsyncIterator[None]:
    yield
    opened, Connection.opened = Connection.opened, []
    for connection in opened:
        connection.close()
        with contextlib.suppress(OSError):
            await connection.writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    async with own_server() as running:
        yield running


class Connection:
    """One raw client connection; every one a test opens is closed after it."""

    opened: ClassVar[list[Connection]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        Connection.opened.append(self)

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, head_only: bool = False, within: float = 5) -> Response:
        async with asyncio.timeout(within):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head[:-4].split(b"\r\n")
            assert status_line.startswith(b"HTTP/1.1 ")
            headers = {}
            for line in lines:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            body = b"" if head_only else await self.reader.readexactly(length)
        return int(status_line.split()[1]), headers, body

    async def closed(self, within: float = 5) -> bool:
        """True once the server closed the connection (nothing more to read)."""
        async with asyncio.timeout(within):
            try:
                return await self.reader.read(65536) == b""
            except ConnectionResetError:
                return True

    def close(self) -> None:
        self.writer.close()


def get(path: str, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET %b HTTP/%b\r\nHost: t\r\n%b\r\n" % (path.encode(), version, extra)


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%b\r\n%b" % (
        len(body),
        extra,
        body,
    )


def publish_body(data: object, category: str = "c") -> bytes:
    return orjson.dumps({"category": category, "data": data})


async def connections_drop_to(server: RunningServer, count: int) -> None:
    assert server.http is not None
    async with asyncio.timeout(5):
        while len(server.http.connections) != count:
            await asyncio.sleep(0.005)


async def test_keep_alive_serves_requests_one_after_another(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    for n in range(3):
        await client.send(post(publish_body(n)))
        status, headers, body = await client.response()
        assert status == 200 and b"connection" not in headers
        assert orjson.loads(body)["success"] is True
    await client.send(get("/events?category=c&timeout=1&since_time=-1"))
    status, _, body = await client.response()
    assert [event["data"] for event in orjson.loads(body)["events"]] == [0, 1, 2]
    client.close()


async def test_http_1_0_closes_unless_keep_alive_is_asked_for(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    await client.send(get("/stats", version=b"1.0"))
    status, headers, _ = await client.response()
    assert status == 200 and headers[b"connection"] == b"close"
    assert await client.closed()
    client = await Connection.open(server.url)
    await client.send(get("/stats", b"Connection: keep-alive\r\n", version=b"1.0"))
    _, headers, _ = await client.response()
    assert headers[b"connection"] == b"keep-alive"
    await client.send(get("/stats", b"Connection: keep-alive\r\n", version=b"1.0"))
    assert (await client.response())[0] == 200
    client.close()


async def test_connection_close_is_honoured(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    await client.send(get("/stats", b"Connection: close\r\n") + get("/stats"))
    status, headers, _ = await client.response()
    assert status == 200 and headers[b"connection"] == b"close"
    assert await client.closed()  # the request behind it is not answered


async def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    await client.send(
        post(publish_body("first"))
        + get("/events?category=c&timeout=5")  # waits for the next event
        + post(publish_body("second"))
        + get("/nowhere")
    )
    status, _, first = await client.response()
    assert status == 200
    assert orjson.loads(first)["success"]
    await wait_for_waiters(server.manager, 1)
    # The publish queued behind the waiting subscribe is not answered yet.
    await server.manager.publish("c", "from elsewhere")
    status, _, events = await client.response()
    assert [event["data"] for event in orjson.loads(events)["events"]] == ["from elsewhere"]
    assert orjson.loads((await client.response())[2])["success"]
    assert (await client.response())[0] == 404
    client.close()


async def test_a_waiter_whose_client_leaves_is_noticed_with_requests_queued_behind(
    server: RunningServer,
) -> None:
    clients = []
    for _ in range(10):
        client = await Connection.open(server.url)
        await client.send(get("/events?category=c&timeout=60") + get("/stats") + get("/stats"))
        clients.append(client)
    await wait_for_waiters(server.manager, 10)
    for client in clients:
        client.close()
    await wait_for_waiters(server.manager, 0)
    await connections_drop_to(server, 0)


async def test_chunked_body_and_expect_100_continue(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    body = publish_body("chunked")
    chunked = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (body[:5], body[5:]))
    await client.send(
        b"POST /publish HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked
        + b"0\r\n\r\n"
    )
    assert (await client.response())[0] == 200
    body = publish_body("expected")
    await client.send(
        b"POST /publish HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    async with asyncio.timeout(5):
        assert await client.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.send(body)
    assert (await client.response())[0] == 200
    stored = await server.manager.wait_for_events(Subscription(("c",), 1, since_time=-1))
    assert [event.data for event in stored.events] == ["chunked", "expected"]
    client.close()


async def test_an_over_long_body_is_refused_before_it_is_sent(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    await client.send(
        b"POST /publish HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        b"Content-Length: 10000000\r\n\r\n"
    )
    status, headers, body = await client.response()
    assert status == 413 and headers[b"connection"] == b"close"
    assert b"larger than 1000 bytes" in body
    assert await client.closed()
    # Chunked, the limit is found while reading.
    client = await Connection.open(server.url)
    await client.send(
        b"POST /publish HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n" + b"x" * 1024 + b"\r\n"
    )  # fmt: skip
    assert (await client.response())[0] == 413
    assert await client.closed()


async def test_head_404_and_405(server: RunningServer) -> None:
    client = await Connection.open(server.url)
    await client.send(b"HEAD /longpoll.js HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = await client.response(head_only=True)
    assert status == 200 and int(headers[b"content-length"]) > 1000 and body == b""
    await client.send(get("/nowhere"))
    status, _, body = await client.response()
    assert status == 404 and orjson.loads(body) == {"error": "no such endpoint: /nowhere"}
    await client.send(b"DELETE /events HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, _ = await client.response()
    assert status == 405 and headers[b"allow"] == b"GET"
    await client.send(get("/publish"))
    status, headers, _ = await client.response()
    assert status == 405 and headers[b"allow"] == b"POST"
    client.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (get("/events?category=" + "x" * 9000 + "&timeout=1"), 414),
        (get("/stats", b"X-Big: " + b"y" * 17000 + b"\r\n"), 431),
        (get("/stats", b"".join(b"X-%d: 1\r\n" % n for n in range(101))), 431),
        (b"GET /stats HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 300_000 + b"\r\n\r\n", 431),
        (b"BREW /coffee HTCPCP/1.0\r\n\r\n", 400),
        (b"GET /stats HTTP/1.1\r\nHost t\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    ],
    ids=["url", "header-bytes", "header-count", "huge-header", "method", "header", "tls"],
)
async def test_requests_over_limits_or_malformed_get_a_clear_error_and_a_close(
    server: RunningServer, request_bytes: bytes, status: int
) -> None:
    client = await Connection.open(server.url)
    await client.send(request_bytes)
    answered, headers, body = await client.response()
    assert answered == status and headers[b"connection"] == b"close"
    assert "error" in orjson.loads(body)
    assert await client.closed()
    await connections_drop_to(server, 0)


@pytest.mark.parametrize("name", ["timeout", "since_time"])
async def test_numbers_of_thousands_of_digits_are_a_400(server: RunningServer, name: str) -> None:
    client = await Connection.open(server.url)
    number = "9" * 5000
    query = f"category=c&timeout={number}"
    if name == "since_time":
        query = f"category=c&timeout=1&since_time=-{number}"
    await client.send(get(f"/events?{query}"))
    status, _, body = await client.response()
    assert status == 400 and name in orjson.loads(body)["error"]
    client.close()


async def test_malformed_requests_are_logged_at_most_once_a_while(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "longpoll.server")
    for _ in range(5):
        client = await Connection.open(server.url)
        await client.send(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await client.response())[0] == 400
        client.close()
    lines = [record for record in caplog.records if "malformed" in record.getMessage()]
    assert len(lines) == 1
    assert not any(record.exc_info for record in caplog.records)


async def test_head_body_and_idle_timeouts_close_the_connection(server: RunningServer) -> None:
    silent = await Connection.open(server.url)  # never sends a byte
    partial_head = await Connection.open(server.url)
    await partial_head.send(b"GET /stats HTTP/1.1\r\nHost: t\r\n")
    partial_body = await Connection.open(server.url)
    await partial_body.send(b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n{")
    idle = await Connection.open(server.url)
    await idle.send(get("/stats"))
    assert (await idle.response())[0] == 200
    assert await silent.closed(2)
    status, _, _ = await partial_head.response(within=2)
    assert status == 408 and await partial_head.closed(2)
    status, _, _ = await partial_body.response(within=2)
    assert status == 408 and await partial_body.closed(2)
    assert await idle.closed(2)
    await connections_drop_to(server, 0)
    assert (await server.manager.stats()).buffered_events == 0


async def test_over_the_connection_limit_is_503_and_accepted_again_below(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with own_server(ServerLimits(max_connections=3)) as server:
        held = [await Connection.open(server.url) for _ in range(3)]
        for client in held:
            await client.send(get("/stats"))
            assert (await client.response())[0] == 200
        with caplog.at_level("WARNING", logger="longpoll.server"):
            refused = []
            for _ in range(3):
                extra = await Connection.open(server.url)
                await extra.send(get("/stats"))
                status, headers, body = await extra.response()
                assert status == 503 and headers[b"retry-after"] == b"1"
                assert "too many connections" in orjson.loads(body)["error"]
                assert await extra.closed()
                extra.close()
                refused.append(extra)
        # One line says so; the refusals right after it are held back.
        lines = [
            r.getMessage() for r in caplog.records if "answering new ones 503" in r.getMessage()
        ]
        assert lines == [
            "3 connections open, the most allowed (--max-connections, or the limit "
            "of open files): answering new ones 503"
        ]
        held.pop().close()
        await connections_drop_to(server, 2)
        again = await Connection.open(server.url)
        await again.send(get("/stats"))
        assert (await again.response())[0] == 200
        for client in [*held, again]:
            client.close()


async def test_a_client_that_never_reads_is_cut_off_and_others_are_not_delayed() -> None:
    options = Options(max_event_buffer_size=100)
    async with own_server(options=options) as server:
        for n in range(100):
            await server.manager.publish("big", "x" * 1000 + str(n))
        hog = await Connection.open(server.url)
        # About 100 KB per answer, asked for again and again, never read.
        request = get("/events?category=big&timeout=1&since_time=-1")
        for _ in range(40):
            hog.writer.write(request * 10)
            await asyncio.sleep(0)
        other = await Connection.open(server.url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            await other.send(get("/stats"))
            assert (await other.response())[0] == 200
        assert loop.time() - started < 2
        await connections_drop_to(server, 1)  # the hog was cut off
        other.close()
        hog.close()


async def test_graceful_shutdown_answers_waiters_closes_idle_and_finishes() -> None:
    async with own_server() as server:
        waiting = await Connection.open(server.url)
        await waiting.send(get("/events?category=c&timeout=60"))
        idle = await Connection.open(server.url)
        await idle.send(get("/stats"))
        assert (await idle.response())[0] == 200
        await wait_for_waiters(server.manager, 1)
        assert server.http is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.create_task(server.http.shutdown())
        status, headers, body = await waiting.response()
        assert status == 200 and headers[b"connection"] == b"close"
        assert orjson.loads(body)["timeout"] == "no events before timeout"
        assert await waiting.closed() and await idle.closed()
        await stopping
        assert loop.time() - started < 1
        assert not server.http.connections
        with pytest.raises(OSError):
            await Connection.open(server.url)


HOLD_SUBSCRIBERS = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /events?category=idle&timeout=60 HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
    held.append(sock)
print("ready", flush=True)
sys.stdin.read()
"""


async def count_objects_per_waiter(count: int) -> float:
    """GC-tracked objects per waiting subscriber of a server on this loop, whose
    clients live in another process, so that only the server's objects count."""
    async with own_server(ServerLimits()) as server:
        gc.collect()
        before = len(gc.get_objects())
        port = server.url.rsplit(":", 1)[1]
        clients = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD_SUBSCRIBERS, port, str(count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await wait_for_waiters(server.manager, count)
            gc.collect()
            per_waiter = (len(gc.get_objects()) - before) / count
        finally:
            assert clients.stdin is not None
            clients.stdin.close()
            await clients.wait()
        await wait_for_waiters(server.manager, 0)
        await connections_drop_to(server, 0)
    return per_waiter


async def test_a_waiting_subscriber_holds_few_objects() -> None:
    # On uvloop, as `longpoll serve` runs, in a thread of its own.
    per_waiter = await asyncio.to_thread(uvloop.run, count_objects_per_waiter(300))
    # Ours: the connection, its parser and the waiter; uvloop's: the transport, a
    # weak reference to it, its write list and the protocol's bound data_received.
    assert per_waiter <= 7.1, per_waiter
