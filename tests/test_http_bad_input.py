"""Bad input over real HTTP: a clear 4xx with a JSON error naming the problem, nothing stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from longpoll import LongpollApp, LongpollManager, Options
from tests.servers import RunningServer, http_client, serve_app

TOO_LONG = "x" * 1025


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("category=c", "timeout is required"),
        ("category=c&timeout=", "timeout is required"),
        ("category=c&timeout=0", "timeout must be between 1 and 110"),
        ("category=c&timeout=-5", "timeout must be between 1 and 110"),
        ("category=c&timeout=111", "timeout must be between 1 and 110"),
        ("category=c&timeout=1.5", "timeout must be a whole number"),
        ("category=c&timeout=abc", "timeout must be a whole number"),
        ("category=c&timeout=+5", "timeout must be a whole number"),
        ("timeout=5", "category is required"),
        ("category=&timeout=5", "category must not be empty"),
        (f"category={TOO_LONG}&timeout=5", "category must be at most 1024 bytes"),
        ("category=%C3%A9" * 1 + "%C3%A9" * 512 + "&timeout=5", "category must be at most 1024"),
        ("category=%ff&timeout=5", "category must be valid UTF-8"),
        ("&".join(["category=c"] * 17) + "&timeout=5", "category may be given at most 16 times"),
        ("category=c&timeout=5&since_time=abc", "since_time must be an integer"),
        ("category=c&timeout=5&since_time=1.5", "since_time must be an integer"),
        ("category=c&timeout=5&since_time=1_000", "since_time must be an integer"),
        (f"category=c&timeout=5&since_time={2**63}", "since_time must fit in a signed 64-bit"),
        (f"category=c&timeout=5&since_time={-(2**63) - 1}", "since_time must fit in a signed 64"),
        ("category=c&timeout=5&last_id=0b3c5a8e-5cd4-4a55-9a55-4c5c1c6f2d11", "last_id needs"),
        ("category=c&timeout=5&since_time=1&last_id=nope", "last_id must be a UUID"),
        # When several parameters are bad, the first in this order is reported:
        # timeout, category, since_time, last_id.
        ("category=%ff&timeout=0&since_time=x&last_id=y", "timeout must be between"),
        ("category=&timeout=5&since_time=x&last_id=y", "category must not be empty"),
        ("category=c&timeout=5&since_time=x&last_id=y", "since_time must be an integer"),
    ],
)
async def test_bad_subscribe_query(server: RunningServer, query: str, named: str) -> None:
    async with http_client(server.url) as client:
        response = await client.get("/events?" + query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert named in response.json()["error"]
    stats = await server.manager.stats()
    assert (stats.categories, stats.waiting_subscribers) == (0, 0)


async def test_subscribe_with_wrong_method(client: httpx.AsyncClient) -> None:
    response = await client.post("/events?category=c&timeout=1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert "GET" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"", "request body is empty"),
        (b"   ", "request body is empty"),
        (b"{not json", "not valid JSON"),
        (b'{"category": "c", "data": 1', "not valid JSON"),
        (b'["c", 1]', "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"data": 1}', "category is required"),
        (b'{"category": 5, "data": 1}', "category must be a string"),
        (b'{"category": null, "data": 1}', "category must be a string"),
        (b'{"category": ["c"], "data": 1}', "category must be a string"),
        (b'{"category": "", "data": 1}', "category must not be empty"),
        (b'{"category": "' + TOO_LONG.encode() + b'", "data": 1}', "at most 1024 bytes"),
        (b'{"category": "c"}', "data is required"),
        (b'{"category": "c", "data": null}', "data must not be null"),
    ],
)
async def test_bad_publish_body(server: RunningServer, body: bytes, named: str) -> None:
    async with http_client(server.url) as client:
        response = await client.post("/publish", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert named in response.json()["error"]
    assert (await server.manager.stats()).buffered_events == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_publish_with_wrong_method(server: RunningServer, method: str) -> None:
    async with http_client(server.url) as client:
        response = await client.request(method, "/publish")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "POST" in response.json()["error"]


@pytest.fixture
async def small_server(portable: bool) -> AsyncIterator[RunningServer]:
    """A server taking publish bodies up to 100 bytes, arriving within 0.5 s."""
    manager = LongpollManager(Options(max_publish_body_bytes=100))
    app = LongpollApp(manager, body_timeout_seconds=0.5)
    async with serve_app(app, portable=portable) as running:
        yield running


async def test_body_over_the_limit(small_server: RunningServer) -> None:
    body = b'{"category": "c", "data": "' + b"x" * 100 + b'"}'
    async with http_client(small_server.url) as client:
        declared = await client.post("/publish", content=body)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
            for start in range(0, len(body), 10):
                yield body[start : start + 10]

        streamed = await client.post("/publish", content=chunks())
        just_fits = await client.post("/publish", content=b'{"category":"c","data":1}'.ljust(100))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "larger than 100 bytes" in response.json()["error"]
    assert just_fits.status_code == 200
    assert (await small_server.manager.stats()).buffered_events == 1


async def raw_request(
    url: str, payload: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    await writer.drain()
    return reader, writer


async def test_slow_body_times_out_and_stores_nothing(small_server: RunningServer) -> None:
    reader, writer = await raw_request(
        small_server.url,
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n" + b'{"category": "c",',
    )
    try:
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert b" 408 " in status_line
    assert (await small_server.manager.stats()).buffered_events == 0


async def test_truncated_body_stores_nothing(small_server: RunningServer) -> None:
    _, writer = await raw_request(
        small_server.url,
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n" + b'{"category": "c",',
    )
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.2)
    assert (await small_server.manager.stats()).buffered_events == 0
    # The server still serves.
    async with http_client(small_server.url) as client:
        response = await client.post("/publish", json={"category": "c", "data": 1})
    assert response.status_code == 200
