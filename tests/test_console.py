"""The per-category listing of the stats endpoint, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from longpoll import AccessPolicy, LongpollApp, LongpollManager, Options
from longpoll.backends import Backend, CategoryStats
from tests.servers import RunningServer, http_client, serve_app, wait_for_waiters

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPERATIONS_TOKEN = "operations-token-for-tests-0123456789"


@contextlib.asynccontextmanager
async def served(
    options: Options | None = None,
    *,
    backend: Backend | None = None,
    portable: bool = False,
    **app_options: Any,
) -> AsyncIterator[RunningServer]:
    """A `LongpollApp` (with `app_options`) and a fresh manager on a free loopback port."""
    manager = LongpollManager(options or Options(), backend=backend)
    async with serve_app(LongpollApp(manager, **app_options), portable=portable) as running:
        yield running


# --- the per-category listing -------------------------------------------------------


async def test_stats_list_the_categories_on_request(make_backend: Callable[[], Backend]) -> None:
    async with (
        served(backend=make_backend()) as server,
        http_client(server.url) as http,
    ):
        manager = server.manager
        for category, count in [("b", 2), ("a", 1), ("é ☕", 1)]:
            for n in range(count):
                await manager.publish(category, n)
        waiting = [
            asyncio.create_task(http.get(f"/events?category={names}&timeout=30"))
            for names in ("a", "a&category=idle", "idle")
        ]
        await wait_for_waiters(manager, 3)

        plain = (await http.get("/stats")).json()
        assert "categories_detail" not in plain
        assert "categories_detail" not in (await http.get("/stats?categories=0")).json()
        detailed = (await http.get("/stats?categories=1")).json()
        listed = detailed.pop("categories_detail")
        assert detailed == plain
        assert listed == [
            {"name": "a", "buffered_events": 1, "waiting_subscribers": 2},
            {"name": "b", "buffered_events": 2, "waiting_subscribers": 0},
            # Waited for, never published to.
            {"name": "idle", "buffered_events": 0, "waiting_subscribers": 2},
            {"name": "é ☕", "buffered_events": 1, "waiting_subscribers": 0},
        ]
        refused = await http.get("/stats?categories=all")
        assert refused.status_code == 400
        assert refused.json() == {"error": "categories must be 1 (list them) or 0"}

        await manager.publish("a", "the end")
        await manager.publish("idle", "at last")
        await asyncio.gather(*waiting)


async def test_the_listing_takes_the_categories_most_recently_published_to(
    make_backend: Callable[[], Backend],
) -> None:
    async with LongpollManager(backend=make_backend()) as manager:
        for name in ("d", "c", "e", "a", "b"):
            await manager.publish(name, name)
            await asyncio.sleep(0.002)  # Redis orders categories by their newest millisecond
        assert await manager.category_stats(3) == [
            CategoryStats("a", 1, 0),
            CategoryStats("b", 1, 0),
            CategoryStats("e", 1, 0),
        ]
        assert [stats.name for stats in await manager.category_stats()] == list("abcde")
        with pytest.raises(ValueError, match="at least 1"):
            await manager.category_stats(0)


async def test_the_stats_endpoint_lists_at_most_a_thousand_categories() -> None:
    async with served() as server, http_client(server.url) as http:
        for index in range(1005):
            await server.manager.publish(f"c{index:04}", index)
        listed = (await http.get("/stats?categories=1")).json()["categories_detail"]
    assert len(listed) == 1000
    assert [stats["name"] for stats in listed] == [f"c{index:04}" for index in range(5, 1005)]


async def test_the_listing_needs_the_operations_token() -> None:
    access = AccessPolicy(operations_token=OPERATIONS_TOKEN)
    async with served(access=access) as server, http_client(server.url) as http:
        await server.manager.publish("c", 1)
        assert (await http.get("/stats?categories=1")).status_code == 401
        headers = {"authorization": f"Bearer {OPERATIONS_TOKEN}"}
        answer = await http.get("/stats?categories=1", headers=headers)
        assert answer.json()["categories_detail"] == [
            {"name": "c", "buffered_events": 1, "waiting_subscribers": 0}
        ]
