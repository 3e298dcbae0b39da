"""Mutated, split, pipelined and truncated request bytes against longpoll's own server.

Whatever arrives, the server answers with well-formed responses (never a 500) or
closes, keeps serving everyone else, and holds nothing once the client is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longpoll import LongpollApp, LongpollManager, Options
from longpoll.server import ServerLimits
from tests.servers import RunningServer, http_client, serve_app, wait_for_waiters

_BODY = b'{"category": "c", "data": [1, "x"]}'
REQUESTS = [
    b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b" % (len(_BODY), _BODY),
    b"GET /events?category=c&timeout=1&since_time=-1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /events?category=c&category=d&timeout=1&since_time=0&last_id= HTTP/1.1\r\n\r\n",
    b"GET /events?category=c&timeout=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'1a\r\n{"category":"d","data":2}\r\n0\r\n\r\n',
    b"GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /longpoll.js HTTP/1.1\r\nIf-None-Match: *\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nConnection: close\r\n\r\n",
]
ALLOWED = {100, 200, 304, 400, 404, 405, 408, 413, 414, 431, 503}


@contextlib.asynccontextmanager
async def fuzz_server() -> AsyncIterator[RunningServer]:
    manager = LongpollManager(Options(max_publish_body_bytes=200))
    limits = ServerLimits(max_url_bytes=300, max_header_bytes=400, head_timeout_seconds=1)
    async with serve_app(LongpollApp(manager, body_timeout_seconds=1), limits=limits) as server:
        yield server


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """`data` with a byte replaced, bytes inserted, or a range removed."""
    kind = draw(st.sampled_from(["replace", "insert", "delete", "none"]))
    at = draw(st.integers(0, len(data)))
    if kind == "replace" and at < len(data):
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=40)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 20)) :]
    return data


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Several requests, some mutated, pipelined, maybe truncated, cut into chunks."""
    chosen = draw(st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=5))
    data = b"".join(mutate(request, draw) for request in chosen)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def check_responses(received: bytes) -> list[int]:
    """The statuses of the well-formed responses that make up `received`."""
    statuses = []
    while received:
        assert received.startswith(b"HTTP/1.1 "), received[:80]
        head, separator, rest = received.partition(b"\r\n\r\n")
        assert separator, f"incomplete head: {received[:200]!r}"
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            assert name and value, line
            if name.lower() == b"content-length":
                length = int(value)
        assert len(rest) >= length, f"truncated body: {received[:200]!r}"
        if status not in (100, 304) and b"javascript" not in head:
            orjson.loads(rest[:length])  # every other answer is JSON
        statuses.append(status)
        received = rest[length:]
    return statuses


async def exchange(url: str, chunks: list[bytes]) -> bytes:
    """Send `chunks`, then read until the server closes or falls silent."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    received = b""
    try:
        for chunk in chunks:
            writer.write(chunk)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.sleep(0)
        while True:
            try:
                # The first answer may be late on a busy machine; then silence ends it.
                async with asyncio.timeout(0.05 if received else 0.25):
                    data = await reader.read(65536)
            except (TimeoutError, ConnectionError):
                break
            if not data:
                break
            received += data
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received


async def test_mutated_requests_never_break_the_server() -> None:
    async with fuzz_server() as server:
        assert server.http is not None
        seen: set[int] = set()

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(streams())
        def run(chunks: list[bytes]) -> None:
            received = asyncio.run_coroutine_threadsafe(exchange(server.url, chunks), loop).result(
                10
            )
            statuses = check_responses(received)
            assert set(statuses) <= ALLOWED, statuses
            seen.update(statuses)

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(run)
        assert {200, 400} <= seen
        # Everything is let go, and a normal round trip works.
        await wait_for_waiters(server.manager, 0)
        async with asyncio.timeout(5):
            while server.http.connections:
                await asyncio.sleep(0.01)
        async with http_client(server.url) as client:
            waiting = asyncio.create_task(client.get("/events?category=after&timeout=5"))
            await wait_for_waiters(server.manager, 1)
            published = await client.post("/publish", json={"category": "after", "data": 1})
            assert published.status_code == 200
            assert (await waiting).json()["events"][0]["data"] == 1
        assert (await server.manager.stats()).waiting_subscribers == 0
