"""`longpoll serve --redis URL --workers N`: several processes, one event history."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import time
from collections.abc import AsyncIterator

import orjson
import psutil
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from bench.redis_server import RedisServer
from longpoll.backends.redis import WAKE_CLIENT_NAME
from tests.servers import ServeProcess, serve_process


class Connections:
    """Raw HTTP/1.1 requests, each on a new connection, all closed at the end."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.writers: list[asyncio.StreamWriter] = []

    async def request(self, head: str, body: bytes = b"") -> asyncio.StreamReader:
        """Send `head` (method and target) and `body`; the answer is left to read."""
        reader, writer = await asyncio.open_connection(*self.address)
        self.writers.append(writer)
        writer.write(f"{head} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        writer.write(body)
        await writer.drain()
        return reader


@contextlib.asynccontextmanager
async def connections(url: str) -> AsyncIterator[Connections]:
    opened = Connections(url)
    try:
        yield opened
    finally:
        for writer in opened.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def read_body(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


async def wake_connections(redis_url: str) -> int:
    client = aioredis.from_url(redis_url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return sum(1 for entry in clients if entry.get("name") == WAKE_CLIENT_NAME)


def worker_connections(server: ServeProcess) -> list[int]:
    """Established client connections on the server's port, per worker process."""
    port = int(server.url.rsplit(":", 1)[1])
    children = psutil.Process(server.process.pid).children()
    workers = [child for child in children if "spawn_main" in " ".join(child.cmdline())]
    return [
        sum(
            1
            for connection in worker.net_connections(kind="tcp")
            if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port
        )
        for worker in workers
    ]


async def metric_values(http: Connections) -> dict[str, float]:
    text = (await read_body(await http.request("GET /metrics"))).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_two_workers_share_one_history_and_count_it_together(
    redis_server: RedisServer,
) -> None:
    flags = ["--redis", redis_server.url, "--redis-prefix", "workers-test", "--workers", "2"]
    with serve_process(*flags) as server:
        async with asyncio.timeout(30), connections(server.url) as http:
            # Each worker holds exactly one wake-up connection, whatever its waiters.
            while await wake_connections(redis_server.url) != 2:
                await asyncio.sleep(0.05)
            # The kernel spreads these connections over both workers.
            subscribers = [
                await http.request("GET /events?category=shared&timeout=30") for _ in range(40)
            ]
            while sum(worker_connections(server)) < 40:
                await asyncio.sleep(0.02)
            held = worker_connections(server)
            assert len(held) == 2 and all(held), f"one worker holds every subscriber: {held}"
            # Any worker's /stats and /metrics count the waiters of both.
            while True:
                stats = orjson.loads(await read_body(await http.request("GET /stats")))
                metrics = await metric_values(http)
                if stats["waiting_subscribers"] == metrics["longpoll_waiting_subscribers"] == 40:
                    break
                await asyncio.sleep(0.1)
            body = b'{"category": "shared", "data": "to all"}'
            published = orjson.loads(await read_body(await http.request("POST /publish", body)))
            answers = await asyncio.gather(*(read_body(reader) for reader in subscribers))
            while (await metric_values(http)).get("longpoll_events_delivered_total") != 40:
                await asyncio.sleep(0.1)
            metrics = await metric_values(http)
            assert metrics["longpoll_events_published_total"] == 1
            assert metrics["longpoll_waiting_subscribers"] == 0
        for answer in answers:
            assert orjson.loads(answer)["events"][0]["id"] == published["id"]
        assert await wake_connections(redis_server.url) == 2
        code, output = server.stop(signal.SIGTERM)
    assert code == 0, output
    assert "Traceback" not in output


async def redis_connections(redis_url: str) -> int:
    client = aioredis.from_url(redis_url)
    try:
        return len(await client.client_list()) - 1  # not counting this one
    finally:
        await client.aclose()


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def test_servers_on_two_ports_serve_one_history(redis_server: RedisServer) -> None:
    per_server = 2500
    raise_file_limit(4 * per_server + 1000)  # ours and, inherited, the servers'
    flags = ["--redis", redis_server.url, "--redis-prefix", "two-ports"]
    with serve_process(*flags) as first, serve_process(*flags) as second:
        async with (
            asyncio.timeout(60),
            connections(first.url) as on_first,
            connections(second.url) as on_second,
        ):
            subscribers = [
                await opened.request("GET /events?category=both&timeout=50")
                for opened in (on_first, on_second)
                for _ in range(per_server)
            ]
            for opened in (on_first, on_second):
                while True:
                    stats = orjson.loads(await read_body(await opened.request("GET /stats")))
                    if stats["waiting_subscribers"] == per_server:
                        break
                    await asyncio.sleep(0.05)
            # 5,000 waiting subscribers: a handful of Redis connections per process.
            assert await redis_connections(redis_server.url) <= 2 * 10
            body = b'{"category": "both", "data": "once"}'
            published = orjson.loads(await read_body(await on_first.request("POST /publish", body)))
            answers = await asyncio.gather(*(read_body(reader) for reader in subscribers))
            for answer in answers:
                assert orjson.loads(answer)["events"][0]["id"] == published["id"]

            # Resuming on either server from the first event gives the same sequence.
            later = [
                orjson.loads(await read_body(await on_second.request("POST /publish", body)))
                for _ in range(3)
            ]
            query = f"category=both&timeout=1&since_time={published['timestamp']}"
            query += f"&last_id={published['id']}"
            resumed = [
                orjson.loads(await read_body(await opened.request(f"GET /events?{query}")))
                for opened in (on_first, on_second)
            ]
        assert resumed[0] == resumed[1]
        assert [event["id"] for event in resumed[0]["events"]] == [p["id"] for p in later]


def test_workers_stop_when_their_parent_is_killed(redis_server: RedisServer) -> None:
    flags = ["--redis", redis_server.url, "--redis-prefix", "orphans", "--workers", "2"]
    with serve_process(*flags) as server:
        parent = psutil.Process(server.process.pid)
        deadline = time.monotonic() + 10
        while True:
            workers = [p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())]
            if len(workers) == 2:
                break
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        code, _ = server.stop(signal.SIGKILL)
        assert code == -signal.SIGKILL
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], "workers outlived their parent"
