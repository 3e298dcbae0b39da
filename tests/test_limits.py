"""Limits that keep one client from hurting others, over real HTTP and alone."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys

import pytest

from longpoll import LongpollApp, LongpollManager, Options
from longpoll.limits import ClientCounts, ClientLimits
from tests.servers import http_client, serve_app, wait_for_waiters

HOST = "127.0.0.1"


async def test_publishes_past_the_rate_of_one_client_get_429(portable: bool) -> None:
    limits = ClientLimits(publish_per_second=5, publish_burst=3)
    app = LongpollApp(LongpollManager(), client_limits=limits)
    async with serve_app(app, portable=portable) as running, http_client(running.url) as client:
        statuses = []
        for n in range(4):
            response = await client.post("/publish", json={"category": "c", "data": n})
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        assert response.json() == {
            "error": "too many publishes: at most 5 per second from one client"
        }
        assert int(response.headers["retry-after"]) >= 1
        assert (await running.manager.stats()).buffered_events == 3
        await asyncio.sleep(0.25)  # a little more than one publish's worth
        again = await client.post("/publish", json={"category": "c", "data": "later"})
        assert again.status_code == 200


async def test_waiting_subscribes_of_one_client_are_bounded_and_released(portable: bool) -> None:
    app = LongpollApp(LongpollManager(), client_limits=ClientLimits(max_waiting=2))
    counts = app.client_counts
    assert counts is not None
    async with serve_app(app, portable=portable) as running, http_client(running.url) as client:
        params: dict[str, str | int] = {"category": "c", "timeout": 10}
        first = asyncio.create_task(client.get("/events", params=params))
        second = asyncio.create_task(client.get("/events", params=params))
        await wait_for_waiters(running.manager, 2)
        third = await client.get("/events", params=params)
        assert third.status_code == 429
        assert third.json() == {"error": "too many waiting subscribes: at most 2 from one client"}
        assert third.headers["retry-after"] == "1"
        # An answer at once (events buffered) is not refused for the waiting ones.
        await client.post("/publish", json={"category": "c", "data": 1})
        answers = await asyncio.gather(first, second)
        assert all(answer.json()["events"][0]["data"] == 1 for answer in answers)
        assert counts.waiting(HOST) == 0
        # A client that leaves while waiting frees its place too.
        async with http_client(running.url) as leaving:
            gone = asyncio.create_task(leaving.get("/events", params=params))
            await wait_for_waiters(running.manager, 1)
            assert counts.waiting(HOST) == 1
            gone.cancel()
        async with asyncio.timeout(5):
            while counts.waiting(HOST) or (await running.manager.stats()).waiting_subscribers:
                await asyncio.sleep(0.01)
        assert counts.clients == 0


def test_client_counts_keep_clients_apart_and_forget_them() -> None:
    now = [0.0]
    counts = ClientCounts(
        ClientLimits(publish_per_second=1, publish_burst=2, max_waiting=1), clock=lambda: now[0]
    )
    for host in ("10.0.0.1", "10.0.0.2"):
        counts.check_publish(host)
        counts.check_publish(host)
    with pytest.raises(Exception, match="too many publishes") as refused:
        counts.check_publish("10.0.0.1")
    assert refused.value.headers == ((b"retry-after", b"1"),)  # type: ignore[attr-defined]
    now[0] = 1.0
    counts.check_publish("10.0.0.1")  # one more second, one more publish
    counts.begin_wait("10.0.0.1")
    counts.begin_wait("10.0.0.2")
    with pytest.raises(Exception, match="too many waiting"):
        counts.begin_wait("10.0.0.1")
    counts.end_wait("10.0.0.1")
    counts.begin_wait("10.0.0.1")
    # Unknown addresses (no peer name) are not limited.
    for _ in range(5):
        counts.check_publish(None)
        counts.begin_wait(None)


def test_client_limits_are_checked() -> None:
    for bad in ({"publish_per_second": 0}, {"publish_burst": 0}, {"max_waiting": -1}):
        with pytest.raises(ValueError, match="must be a positive"):
            ClientLimits(**bad)
    assert not ClientLimits().active


async def test_the_oldest_events_of_any_category_go_first_past_the_byte_bound(
    portable: bool,
) -> None:
    # Each event's JSON is about 150 bytes: the bound holds four or five.
    manager = LongpollManager(Options(max_buffered_bytes=700))
    async with (
        serve_app(LongpollApp(manager), portable=portable) as running,
        http_client(running.url) as client,
    ):
        first = (await client.post("/publish", json={"category": "a", "data": "x" * 50})).json()
        for n in range(6):
            category = "b" if n % 2 else "c"
            await client.post("/publish", json={"category": category, "data": "y" * 50})
        stats = await running.manager.stats()
        assert stats.buffered_bytes is not None and stats.buffered_bytes <= 700
        assert stats.buffered_events == 4
        # The subscriber of "a" learns that it missed its event.
        response = await client.get(
            "/events",
            params={"category": "a", "timeout": 1, "since_time": first["timestamp"] - 1},
        )
        assert response.json()["missed"] is True
        assert "events" not in response.json()
        response = await client.get("/metrics")
        assert 'longpoll_events_dropped_total{reason="size"} 3.0' in response.text


async def test_a_new_category_past_the_bound_is_refused_until_one_empties(
    portable: bool,
) -> None:
    options = Options(max_stored_categories=2, event_ttl_seconds=0.1)
    manager = LongpollManager(options)
    async with (
        serve_app(LongpollApp(manager), portable=portable) as running,
        http_client(running.url) as client,
    ):
        for category in ("a", "b"):
            assert (
                await client.post("/publish", json={"category": category, "data": 1})
            ).is_success
        refused = await client.post("/publish", json={"category": "c", "data": 1})
        assert refused.status_code == 507
        assert refused.json() == {"error": "the server keeps at most 2 categories: try again later"}
        assert refused.headers["retry-after"] == "10"
        # Known categories take events all the same.
        assert (await client.post("/publish", json={"category": "a", "data": 2})).is_success
        # Once the events expire (and their gap markers after them), "c" fits.
        async with asyncio.timeout(10):
            while True:
                response = await client.post("/publish", json={"category": "c", "data": 1})
                if response.status_code == 200:
                    break
                assert response.status_code == 507
                await asyncio.sleep(0.2)
        assert (await running.manager.stats()).categories <= 2


def test_serve_fits_its_connections_to_the_limit_of_open_files() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    script = (
        "import logging, sys\n"
        "from longpoll.server import ServerLimits, fit_to_file_limit\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
        "print(fit_to_file_limit(ServerLimits()).max_connections)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=30, check=True, preexec_fn=low_limit,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[-1] == "136"
    assert "the limit of open files (200) holds 136 connections" in lines[0]

    # A soft limit below the hard one is raised to it.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard > 300, "the hard limit is too low to test"

    def raisable() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=30, check=True, preexec_fn=raisable,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    raised = hard if hard != resource.RLIM_INFINITY else 1 << 20
    most = min(20_000, raised - 64)
    assert lines[-1] == str(most)
    assert f"(limit of open files: {raised})" in lines[0] or f"({raised}) holds" in lines[0]


def test_serve_flags_for_the_limits() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "longpoll.cli", "serve", "--port", "0", "--publish-rate", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--publish-rate must be a positive number" in done.stderr
    assert done.stderr.count("\n") == 1
