"""/metrics over real HTTP after a known sequence of publishes and deliveries."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from longpoll import AccessPolicy, LongpollApp, LongpollManager, Options
from tests.servers import http_client, serve_app, wait_for_waiters

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def test_counts_after_a_known_sequence(portable: bool) -> None:
    manager = LongpollManager(Options(max_event_buffer_size=2))
    async with (
        serve_app(LongpollApp(manager), portable=portable) as running,
        http_client(running.url) as client,
    ):
        for n in range(3):
            response = await client.post("/publish", json={"category": "a", "data": n})
            assert response.status_code == 200
        polled = await client.get(
            "/events", params={"category": "a", "timeout": 1, "since_time": -1}
        )
        assert len(polled.json()["events"]) == 2
        assert (await client.get("/nothing-here")).status_code == 404
        assert (await client.get("/events", params={"category": "a"})).status_code == 400
        waiting = asyncio.create_task(client.get("/events", params={"category": "b", "timeout": 5}))
        await wait_for_waiters(manager, 1)

        samples = await scrape(client)
        assert value(samples, "longpoll_events_published_total") == 3
        assert value(samples, "longpoll_events_delivered_total") == 2
        assert value(samples, "longpoll_events_dropped_total", reason="size") == 1
        assert value(samples, "longpoll_events_dropped_total", reason="ttl") == 0
        assert value(samples, "longpoll_events_dropped_total", reason="deleted") == 0
        assert value(samples, "longpoll_waiting_subscribers") == 1
        assert value(samples, "longpoll_categories") == 1
        assert value(samples, "longpoll_buffered_events") == 2
        assert value(samples, "longpoll_backend_errors_total") == 0
        answers = "longpoll_http_responses_total"
        assert value(samples, answers, endpoint="publish", status="200") == 3
        assert value(samples, answers, endpoint="subscribe", status="200") == 1
        assert value(samples, answers, endpoint="subscribe", status="400") == 1
        assert value(samples, answers, endpoint="none", status="404") == 1
        duration = "longpoll_request_duration_seconds"
        assert value(samples, duration + "_count", endpoint="publish") == 3
        assert value(samples, duration + "_count", endpoint="subscribe") == 2
        assert value(samples, duration + "_bucket", endpoint="publish", le="+Inf") == 3
        assert 0 <= value(samples, duration + "_sum", endpoint="publish") < 5
        if not portable:
            assert value(samples, "longpoll_open_connections") >= 1

        await client.post("/publish", json={"category": "b", "data": "late"})
        assert (await waiting).json()["events"][0]["data"] == "late"
        samples = await scrape(client)
        assert value(samples, "longpoll_events_delivered_total") == 3
        assert value(samples, "longpoll_waiting_subscribers") == 0
        # The subscribe that waited took about as long as it waited, not longer than 5 s.
        waited = value(samples, duration + "_bucket", endpoint="subscribe", le="5.0")
        assert waited == 3


async def test_events_dropped_for_age_and_after_first_retrieval() -> None:
    options = Options(event_ttl_seconds=0.05, delete_event_after_first_retrieval=True)
    manager = LongpollManager(options)
    async with serve_app(LongpollApp(manager)) as running, http_client(running.url) as client:
        await client.post("/publish", json={"category": "gone", "data": 1})
        await client.post("/publish", json={"category": "kept", "data": 2})
        polled = await client.get(
            "/events", params={"category": "kept", "timeout": 1, "since_time": -1}
        )
        assert polled.json()["events"][0]["data"] == 2
        await asyncio.sleep(0.2)
        (await client.get("/events", params={"category": "gone", "timeout": 1})).raise_for_status()
        samples = await scrape(client)
        assert value(samples, "longpoll_events_dropped_total", reason="deleted") == 1
        assert value(samples, "longpoll_events_dropped_total", reason="ttl") == 1


async def test_metrics_move_go_or_need_the_operations_token() -> None:
    token = "operations-token-for-tests-0123456789"
    app = LongpollApp(LongpollManager(), access=AccessPolicy(operations_token=token))
    async with serve_app(app) as running, http_client(running.url) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.post("/metrics")).status_code == 401
        samples = await scrape(client, authorization=f"Bearer {token}")
        assert value(samples, "longpoll_events_published_total") == 0
    moved = LongpollApp(LongpollManager(), metrics_path="/internal/metrics")
    async with serve_app(moved) as running, http_client(running.url) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/internal/metrics")).status_code == 200
    without = LongpollApp(LongpollManager(), metrics_path=None)
    async with serve_app(without) as running, http_client(running.url) as client:
        assert (await client.get("/metrics")).status_code == 404
