"""The wire protocol over real HTTP: response shapes, resume, buffers, several categories."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import httpx

from longpoll import Options
from tests.conftest import ServerFactory
from tests.servers import RunningServer, http_client, wait_for_waiters

NO_CACHE_HEADERS = {
    "content-type": "application/json",
    "cache-control": "no-cache, no-store, must-revalidate",
    "pragma": "no-cache",
    "expires": "0",
    "x-content-type-options": "nosniff",
}


def assert_protocol_headers(response: httpx.Response) -> None:
    for name, value in NO_CACHE_HEADERS.items():
        assert response.headers[name] == value, name


async def publish(client: httpx.AsyncClient, category: str, data: Any) -> dict[str, Any]:
    response = await client.post("/publish", json={"category": category, "data": data})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def poll(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    params.setdefault("timeout", 1)
    response = await client.get("/events", params=params)
    assert response.status_code == 200, response.text
    assert_protocol_headers(response)
    body: dict[str, Any] = response.json()
    return body


async def test_publish_response_and_event_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/publish", json={"category": "news", "data": {"title": "é"}})
    assert response.status_code == 200
    assert_protocol_headers(response)
    published = response.json()
    assert set(published) == {"success", "id", "timestamp"}
    assert published["success"] is True
    assert uuid.UUID(published["id"]).version == 4
    body = await poll(client, category="news", since_time=-1)
    assert body == {
        "events": [
            {
                "timestamp": published["timestamp"],
                "category": "news",
                "data": {"title": "é"},
                "id": published["id"],
            }
        ]
    }


async def test_timeout_response_shape(client: httpx.AsyncClient) -> None:
    before = await publish(client, "other", 1)
    body = await poll(client, category="quiet", timeout=1)
    assert set(body) == {"timeout", "timestamp"}
    assert body["timeout"] == "no events before timeout"
    assert body["timestamp"] >= before["timestamp"]


async def test_any_json_data_round_trips(client: httpx.AsyncClient) -> None:
    values: list[Any] = ["text", 42, 1.5, True, False, [1, "two", None], {"nested": {"deep": []}}]
    for value in values:
        await publish(client, "types", value)
    body = await poll(client, category="types", since_time=-1)
    assert [event["data"] for event in body["events"]] == values


async def test_form_encoded_body_is_parsed_as_json(server: RunningServer) -> None:
    # curl --data sends application/x-www-form-urlencoded; the body is JSON all the same.
    async with http_client(server.url) as client:
        response = await client.post(
            "/publish",
            content=b'{"category": "c", "data": "x"}',
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    assert response.json()["success"] is True


async def test_waiting_subscriber_receives_event(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    waiting = asyncio.create_task(poll(client, category="live", timeout=10))
    await wait_for_waiters(server.manager, 1)
    published = await publish(client, "live", "hello")
    body = await waiting
    assert [event["id"] for event in body["events"]] == [published["id"]]
    assert (await server.manager.stats()).waiting_subscribers == 0


async def test_without_since_time_only_new_events(client: httpx.AsyncClient) -> None:
    await publish(client, "c", "old")
    body = await poll(client, category="c", timeout=1)
    assert "timeout" in body


async def test_since_time_returns_later_events(client: httpx.AsyncClient) -> None:
    first = await publish(client, "c", 1)
    await asyncio.sleep(0.005)
    second = await publish(client, "c", 2)
    body = await poll(client, category="c", since_time=first["timestamp"], last_id=first["id"])
    assert [event["id"] for event in body["events"]] == [second["id"]]


async def test_resume_through_a_burst_sharing_milliseconds(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    # Published in-process and concurrently (a Redis backend has round trips) so
    # that many events share each millisecond; sorted into their published order.
    burst = [server.manager.publish("burst", index) for index in range(200)]
    published = sorted(await asyncio.gather(*burst), key=lambda event: event.sequence)
    assert len({event.timestamp for event in published}) < len(published) / 2
    seen = [published[0].id.hex]
    position = {"timestamp": published[0].timestamp, "id": str(published[0].id)}
    while len(seen) < len(published):
        body = await poll(
            client, category="burst", since_time=position["timestamp"], last_id=position["id"]
        )
        events = body["events"][:7]  # resume from inside each batch, not only its end
        seen.extend(uuid.UUID(event["id"]).hex for event in events)
        position = events[-1]
    assert seen == [event.id.hex for event in published]


async def test_last_id_in_any_spelling(client: httpx.AsyncClient) -> None:
    first = await publish(client, "c", 1)
    second = await publish(client, "c", 2)
    spelled = uuid.UUID(first["id"]).hex.upper()
    body = await poll(client, category="c", since_time=first["timestamp"], last_id=spelled)
    assert [event["id"] for event in body["events"]] == [second["id"]]


async def publish_old_event(
    server: RunningServer, client: httpx.AsyncClient, category: str
) -> None:
    """Publish "old" and see a waiter get it: with Redis, its wake-up has then gone out
    and can no longer reach a later subscriber."""
    first = asyncio.create_task(poll(client, category=category, timeout=10))
    await wait_for_waiters(server.manager, 1)
    await publish(client, category, "old")
    assert [event["data"] for event in (await first)["events"]] == ["old"]


async def test_empty_since_time_and_last_id_count_as_absent(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    # golongpoll's browser client sends last_id= on its first poll.
    await publish_old_event(server, client, "c")
    waiting = asyncio.create_task(poll(client, category="c", since_time="", last_id="", timeout=10))
    await wait_for_waiters(server.manager, 1)
    new = await publish(client, "c", "new")
    body = await waiting
    assert [event["id"] for event in body["events"]] == [new["id"]]


async def test_far_future_since_time_waits_for_new_events(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    await publish_old_event(server, client, "c")
    waiting = asyncio.create_task(poll(client, category="c", since_time=2**62, timeout=10))
    await wait_for_waiters(server.manager, 1)
    new = await publish(client, "c", "new")
    assert [event["id"] for event in (await waiting)["events"]] == [new["id"]]


async def test_resume_from_timeout_timestamp_loses_nothing(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        body = await poll(client, category="c", timeout=1)
        new = await publish(client, "c", "right after the timeout")
        resumed = await poll(client, category="c", since_time=body["timestamp"])
        assert [event["id"] for event in resumed["events"]] == [new["id"]]


async def test_several_categories_merge_in_publish_order(client: httpx.AsyncClient) -> None:
    published = [await publish(client, category, i) for i, category in enumerate("abcabcab")]
    await publish(client, "not-subscribed", "x")
    response = await client.get(
        "/events", params=[("category", "a"), ("category", "b"), ("timeout", 1), ("since_time", -1)]
    )
    events = response.json()["events"]
    expected = [
        p["id"] for p, category in zip(published, "abcabcab", strict=True) if category in "ab"
    ]
    assert [event["id"] for event in events] == expected
    middle = events[2]
    response = await client.get(
        "/events",
        params=[
            ("category", "b"),
            ("category", "a"),
            ("timeout", 1),
            ("since_time", middle["timestamp"]),
            ("last_id", middle["id"]),
        ],
    )
    assert [event["id"] for event in response.json()["events"]] == expected[3:]


async def test_waiting_on_several_categories(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    waiting = asyncio.create_task(
        client.get("/events", params=[("category", "x"), ("category", "y"), ("timeout", 10)])
    )
    await wait_for_waiters(server.manager, 1)
    published = await publish(client, "y", "on y")
    response = await waiting
    assert [event["id"] for event in response.json()["events"]] == [published["id"]]
    assert (await server.manager.stats()).waiting_subscribers == 0


async def test_overflow_drops_oldest_and_signals_the_gap(make_server: ServerFactory) -> None:
    async with (
        make_server(Options(max_event_buffer_size=3)) as server,
        http_client(server.url) as client,
    ):
        published = [await publish(client, "c", i) for i in range(5)]
        everything = await poll(client, category="c", since_time=-1)
        assert [e["data"] for e in everything["events"]] == [2, 3, 4]
        assert "missed" not in everything

        # Resuming from event 0: event 1 was dropped, a gap.
        for lost_position in published[:1]:
            body = await poll(
                client,
                category="c",
                since_time=lost_position["timestamp"],
                last_id=lost_position["id"],
            )
            assert body["missed"] is True
            assert [e["data"] for e in body["events"]] == [2, 3, 4]
        # Resuming from event 1 or later: nothing was lost.
        for kept_position in published[1:4]:
            body = await poll(
                client,
                category="c",
                since_time=kept_position["timestamp"],
                last_id=kept_position["id"],
            )
            assert "missed" not in body
        # The gap flag reaches a subscriber that has to wait too.
        last = published[-1]
        gap_wait = await poll(client, category="c", since_time=last["timestamp"] - 10**6)
        assert gap_wait["missed"] is True


async def test_ttl_expires_events_and_forgets_categories(make_server: ServerFactory) -> None:
    async with (
        make_server(Options(event_ttl_seconds=0.5)) as server,
        http_client(server.url) as client,
    ):
        published = await publish(client, "short-lived", "x")
        assert (await server.manager.stats()).buffered_events == 1
        await asyncio.sleep(0.6)
        since = published["timestamp"] - 1
        resumed = await poll(client, category="short-lived", since_time=since)
        assert "events" not in resumed
        assert resumed["missed"] is True
        async with asyncio.timeout(5):
            while (await server.manager.stats()).categories:
                await asyncio.sleep(0.05)
        assert (await server.manager.stats()).buffered_events == 0


async def test_a_read_skips_expired_events_and_flags_the_gap(make_server: ServerFactory) -> None:
    async with (
        make_server(Options(event_ttl_seconds=0.4)) as server,
        http_client(server.url) as client,
    ):
        old = await publish(client, "aging", "old")
        await asyncio.sleep(0.5)
        new = await publish(client, "aging", "new")
        body = await poll(client, category="aging", since_time=old["timestamp"] - 1)
        assert [event["id"] for event in body["events"]] == [new["id"]]
        assert body["missed"] is True
        # After the expired event, nothing was missed.
        after = await poll(client, category="aging", since_time=old["timestamp"], last_id=old["id"])
        assert [event["id"] for event in after["events"]] == [new["id"]]
        assert "missed" not in after


async def test_delete_after_first_retrieval(make_server: ServerFactory) -> None:
    options = Options(delete_event_after_first_retrieval=True)
    async with make_server(options) as server, http_client(server.url) as client:
        # Several subscribers waiting when the event arrives all get it.
        waiting = [asyncio.create_task(poll(client, category="once", timeout=10)) for _ in range(3)]
        await wait_for_waiters(server.manager, 3)
        published = await publish(client, "once", "x")
        for task in waiting:
            assert [e["id"] for e in (await task)["events"]] == [published["id"]]
        # The deletion follows the answer (with Redis, one round trip later).
        await wait_until_buffered(server, 0)
        assert "events" not in await poll(client, category="once", since_time=-1)

        # A buffered event is removed once one subscriber retrieved it.
        await publish(client, "once", "buffered")
        first = await poll(client, category="once", since_time=-1)
        assert [e["data"] for e in first["events"]] == ["buffered"]
        await wait_until_buffered(server, 0)
        assert "events" not in await poll(client, category="once", since_time=-1)


async def wait_until_buffered(server: RunningServer, count: int) -> None:
    async with asyncio.timeout(5):
        while (await server.manager.stats()).buffered_events != count:
            await asyncio.sleep(0.01)


async def test_published_data_with_unicode_category(client: httpx.AsyncClient) -> None:
    category = "čaj/☕ ?&=#"
    published = await publish(client, category, "x")
    body = await poll(client, category=category, since_time=-1)
    assert body["events"][0]["id"] == published["id"]
    assert body["events"][0]["category"] == category


async def test_category_of_1024_bytes_is_accepted(client: httpx.AsyncClient) -> None:
    category = "é" * 512
    await publish(client, category, "x")
    assert len((await poll(client, category=category, since_time=-1))["events"]) == 1


async def test_stats_endpoint(server: RunningServer, client: httpx.AsyncClient) -> None:
    await publish(client, "a", 1)
    await publish(client, "b", 1)
    response = await client.get("/stats")
    stats = response.json()
    # Only the memory backend counts bytes (those of the events' JSON).
    event_bytes = stats.pop("buffered_bytes")
    assert event_bytes is None or event_bytes > 2 * len('{"timestamp":1,"category":"a","data":1}')
    assert stats == {"categories": 2, "buffered_events": 2, "waiting_subscribers": 0}


async def test_unknown_path_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert "error" in response.json()


async def test_requests_leave_no_garbage_cycles(server: RunningServer) -> None:
    """Served requests are freed by reference counting: a cycle per request would make
    the cyclic collector scan and free every request, with long pauses under load."""
    async with http_client(server.url) as client:
        await publish(client, "warm", 0)  # connection and first-use allocations
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for n in range(20):
                await publish(client, "news", n)
                await poll(client, category="news", since_time=-1)
            await publish(client, "news", "woken")
            gc.collect()
            leaked = [
                type(obj).__qualname__
                for obj in gc.garbage
                if type(obj).__module__.startswith(("longpoll", "uvicorn"))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert leaked == []
