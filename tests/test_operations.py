"""The endpoints for operators over real HTTP: stats, liveness and readiness."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from bench.redis_server import RedisServer
from longpoll import LongpollApp, LongpollManager
from longpoll.access import AccessPolicy
from longpoll.backends.redis import RedisBackend
from tests.servers import http_client, serve_app, serve_process

OPERATIONS_TOKEN = "operations-token-for-tests-0123456789"


async def test_health_and_readiness_of_a_running_server(portable: bool) -> None:
    manager = LongpollManager()
    app = LongpollApp(manager)
    async with serve_app(app, portable=portable) as running, http_client(running.url) as client:
        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        head = await client.head("/readyz")
        assert head.status_code == 200 and head.content == b""
        for path in ("/healthz", "/readyz", "/stats"):
            refused = await client.post(path)
            assert refused.status_code == 405
            assert refused.headers["allow"] == "GET, HEAD"
        manager.begin_shutdown()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "reason": "server is shutting down"}


async def test_readiness_follows_redis_away_and_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        backend = RedisBackend(redis.url, key_prefix=f"test-{uuid.uuid4().hex}")
        manager = LongpollManager(backend=backend)
        async with serve_app(LongpollApp(manager)) as running, http_client(running.url) as client:
            assert (await client.get("/readyz")).status_code == 200
            redis.stop()
            away = await client.get("/readyz")
            assert away.status_code == 503
            assert away.json()["reason"].startswith("Redis is unavailable")
            # Alive all the same: a liveness probe must not restart a healthy process.
            assert (await client.get("/healthz")).status_code == 200
            redis.start()
            async with asyncio.timeout(10):
                while (await client.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.05)
    finally:
        redis.stop()


async def test_an_operations_token_guards_stats_health_and_readiness(portable: bool) -> None:
    access = AccessPolicy(operations_token=OPERATIONS_TOKEN)
    app = LongpollApp(LongpollManager(), access=access)
    async with serve_app(app, portable=portable) as running, http_client(running.url) as client:
        for path in ("/stats", "/healthz", "/readyz"):
            refused = await client.get(path)
            assert refused.status_code == 401
            assert refused.json() == {
                "error": "reading stats, metrics, health and readiness needs a token: "
                "send Authorization: Bearer <token>"
            }
            assert refused.headers["www-authenticate"] == "Bearer"
            wrong = await client.get(path, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            allowed = await client.get(
                path, headers={"authorization": f"Bearer {OPERATIONS_TOKEN}"}
            )
            assert allowed.status_code == 200, allowed.text
        # Subscribing and publishing need no operations token.
        published = await client.post("/publish", json={"category": "c", "data": 1})
        assert published.status_code == 200


def test_serve_moves_or_leaves_out_the_operations_endpoints() -> None:
    with (
        serve_process(
            "--healthz-path", "/live", "--readyz-path", "off", "--stats-path", "off"
        ) as serving,
        httpx.Client(base_url=serving.url, timeout=10) as client,
    ):
        assert client.get("/live").json() == {"status": "ok"}
        for path in ("/healthz", "/readyz", "/stats"):
            assert client.get(path).status_code == 404
