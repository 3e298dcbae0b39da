"""The Redis backend across processes: one order, shared wake-ups, outages.

Two managers with their own backends on one Redis stand for two processes (or
machines); everything runs against a real `redis-server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bench.redis_server import RedisServer
from longpoll import BackendUnavailable, LongpollApp, LongpollManager, Options, Subscription
from longpoll.backends.redis import WAKE_CLIENT_NAME, RedisBackend, _entry_position
from tests.servers import RunningServer, http_client, serve_app, wait_for_waiters


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test alone, which it may stop and start."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def two_servers(
    url: str, options: Options | None = None, **backend: Any
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Two apps ("processes") sharing one Redis history under a fresh prefix."""
    prefix = f"pair-{uuid.uuid4().hex}"
    managers = [
        LongpollManager(
            options or Options(), backend=RedisBackend(url, key_prefix=prefix, **backend)
        )
        for _ in range(2)
    ]
    async with (
        serve_app(LongpollApp(managers[0])) as first,
        serve_app(LongpollApp(managers[1])) as second,
    ):
        yield first, second


async def publish(client: httpx.AsyncClient, category: str, data: Any) -> dict[str, Any]:
    response = await client.post("/publish", json={"category": category, "data": data})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def poll(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    params.setdefault("timeout", 1)
    response = await client.get("/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def connections(url: str) -> list[dict[str, Any]]:
    """The clients connected to Redis, less the one asking."""
    async with aioredis.Redis.from_url(url) as admin:
        clients: list[dict[str, Any]] = await admin.client_list()
        return [c for c in clients if c["cmd"] != "client|list"]


async def test_two_processes_share_one_order(redis_server: RedisServer) -> None:
    async with (
        two_servers(redis_server.url) as (first, second),
        http_client(first.url) as one,
        http_client(second.url) as two,
    ):
        # Published alternately on both, on two categories.
        published = []
        for index in range(40):
            client = one if index % 2 else two
            published.append(await publish(client, "ab"[index % 3 == 0], index))
        query = {"category": ["a", "b"], "since_time": -1}
        seen_one, seen_two = await poll(one, **query), await poll(two, **query)
        assert seen_one == seen_two
        assert [e["id"] for e in seen_one["events"]] == [p["id"] for p in published]
        timestamps = [p["timestamp"] for p in published]
        assert timestamps == sorted(timestamps)


async def test_publish_on_one_wakes_waiter_on_the_other(redis_server: RedisServer) -> None:
    async with (
        two_servers(redis_server.url) as (first, second),
        http_client(first.url) as one,
        http_client(second.url) as two,
    ):
        waiting = asyncio.create_task(poll(two, category="c", timeout=10))
        await wait_for_waiters(second.manager, 1)
        published = await publish(one, "c", "hello")
        body = await asyncio.wait_for(waiting, 5)
        assert [e["id"] for e in body["events"]] == [published["id"]]
        assert body["events"][0]["data"] == "hello"


async def test_client_resumes_against_the_other_process(redis_server: RedisServer) -> None:
    async with (
        two_servers(redis_server.url) as (first, second),
        http_client(first.url) as one,
        http_client(second.url) as two,
    ):
        published = [await publish(one, "r", index) for index in range(30)]
        # Read a few from one process, then resume on the other, alternating.
        seen: list[str] = []
        position = {"timestamp": -1, "id": ""}
        clients = [one, two]
        while len(seen) < len(published):
            client = clients[len(seen) % 2]
            body = await poll(
                client, category="r", since_time=position["timestamp"], last_id=position["id"]
            )
            events = body["events"][:4]
            seen += [e["id"] for e in events]
            position = events[-1]
        assert seen == [p["id"] for p in published]
        # A timeout on one process is a safe resume point on the other.
        timed_out = await poll(
            one, category="r", since_time=position["timestamp"], last_id=position["id"]
        )
        assert "timeout" in timed_out
        later = await publish(two, "r", "later")
        body = await poll(two, category="r", since_time=timed_out["timestamp"])
        assert [e["id"] for e in body["events"]] == [later["id"]]


async def test_event_json_is_stored_as_published(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, key_prefix=f"json-{uuid.uuid4().hex}")
    async with LongpollManager(backend=backend) as manager:
        category = 'čaj/☕ "quoted" \\ ?&=#'
        event = await manager.publish(category, {"x": [1, 2.5, "ü"], "y": None})
        found = await backend.read(Subscription((category,), 1, since_time=-1))
        assert [e.json for e in found.events] == [event.json]
        assert found.events[0] == event
        assert found.events[0].data == event.data


async def test_concurrent_publishes_each_get_their_event_even_after_a_script_flush(
    redis_server: RedisServer,
) -> None:
    # Publishes made at once share round trips; each still gets its own event,
    # also when Redis forgot the scripts (a restart).
    backend = RedisBackend(redis_server.url, key_prefix=f"burst-{uuid.uuid4().hex}")
    async with LongpollManager(backend=backend) as manager:
        for round_ in range(2):
            events = await asyncio.gather(
                *(manager.publish("burst", {"round": round_, "n": n}) for n in range(200))
            )
            assert [event.data for event in events] == [
                {"round": round_, "n": n} for n in range(200)
            ]
            assert len({(event.timestamp, event.sequence) for event in events}) == 200
            found = await manager.wait_for_events(
                Subscription(("burst",), 1, since_time=min(e.timestamp for e in events) - 1)
            )
            assert found.events == sorted(events, key=lambda e: (e.timestamp, e.sequence))
            async with aioredis.Redis.from_url(redis_server.url) as admin:
                await admin.script_flush()


async def test_a_read_trims_expired_events_itself(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, key_prefix=f"ttl-{uuid.uuid4().hex}")
    async with LongpollManager(Options(event_ttl_seconds=0.3), backend=backend) as manager:
        for task in backend._tasks[1:]:
            task.cancel()  # no periodic purge: the read alone has to see the expiry
        old = await manager.publish("t", "old")
        await asyncio.sleep(0.4)
        batch = await manager.wait_for_events(Subscription(("t",), 1, since_time=old.timestamp - 1))
        assert batch.events == []
        assert batch.missed


async def test_many_waiters_hold_a_handful_of_connections(redis_server: RedisServer) -> None:
    before = len(await connections(redis_server.url))
    prefix = f"many-{uuid.uuid4().hex}"
    managers = [
        LongpollManager(backend=RedisBackend(redis_server.url, key_prefix=prefix)) for _ in range(2)
    ]
    async with managers[0], managers[1]:
        point = await managers[0].publish("warm", "up")
        # A since_time makes every subscriber read from Redis before it waits.
        subscription = Subscription(("crowd",), 20, since_time=point.timestamp)
        waiters = [
            asyncio.create_task(managers[index % 2].wait_for_events(subscription))
            for index in range(2500)
        ]
        for manager in managers:
            await wait_for_waiters(manager, 1250)
        during = len(await connections(redis_server.url)) - before
        event = await managers[1].publish("crowd", "go")
        batches = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert all(batch.events == [event] for batch in batches)
    # One wake-up connection and a small pool per process.
    assert during <= 2 * (1 + 8), during
    print(f"2500 waiters over 2 managers: {during} Redis connections")


async def test_killed_wakeup_connection_is_re_established(redis_server: RedisServer) -> None:
    backend = RedisBackend(
        redis_server.url, key_prefix=f"kill-{uuid.uuid4().hex}", health_check_seconds=0.5
    )
    async with LongpollManager(backend=backend) as manager:
        wakers = [c for c in await connections(redis_server.url) if c["name"] == WAKE_CLIENT_NAME]
        async with aioredis.Redis.from_url(redis_server.url) as admin:
            for waker in wakers:
                await admin.client_kill_filter(_id=waker["id"])
        killed = {waker["id"] for waker in wakers}
        async with asyncio.timeout(5):
            while True:
                now = [
                    c for c in await connections(redis_server.url) if c["name"] == WAKE_CLIENT_NAME
                ]
                if now and not {c["id"] for c in now} & killed:
                    break
                await asyncio.sleep(0.05)
        waiting = asyncio.create_task(manager.wait_for_events(Subscription(("k",), 10)))
        await wait_for_waiters(manager, 1)
        event = await manager.publish("k", 1)
        assert (await asyncio.wait_for(waiting, 5)).events == [event]


async def test_event_stored_while_a_waiter_times_out_is_not_lost(
    redis_server: RedisServer,
) -> None:
    # The race: another process stores an event after this process's waiter last
    # heard from Redis, just before its timeout takes a resume point.
    prefix = f"race-{uuid.uuid4().hex}"
    here = RedisBackend(redis_server.url, key_prefix=prefix)
    there = RedisBackend(redis_server.url, key_prefix=prefix)
    async with LongpollManager(backend=here) as manager, LongpollManager(backend=there) as other:
        # Hold back this process's wake-ups, as a slow network would.
        for task in here._tasks:
            task.cancel()
        waiting = asyncio.create_task(manager.wait_for_events(Subscription(("x",), 1)))
        await wait_for_waiters(manager, 1)
        event = await other.publish("x", "late")
        batch = await waiting
        assert batch.events == [event]
        assert batch.timestamp == event.timestamp


async def test_timeout_answers_are_safe_while_the_wakeup_connection_reconnects(
    redis_server: RedisServer,
) -> None:
    # The wake-up connection dies while a subscriber waits and another process
    # publishes: the timeout answer must carry the event or a point before it, and
    # resuming from it must give nothing twice.
    prefix = f"reconnect-{uuid.uuid4().hex}"
    here = RedisBackend(redis_server.url, key_prefix=prefix, health_check_seconds=0.5)
    there = RedisBackend(redis_server.url, key_prefix=prefix)
    async with LongpollManager(backend=here) as manager, LongpollManager(backend=there) as other:
        for _ in range(5):
            waiting = asyncio.create_task(manager.wait_for_events(Subscription(("r",), 1)))
            await wait_for_waiters(manager, 1)
            async with aioredis.Redis.from_url(redis_server.url) as admin:
                for client in await admin.client_list():
                    if client["name"] == WAKE_CLIENT_NAME:
                        await admin.client_kill_filter(_id=client["id"])
            event = await other.publish("r", "while reconnecting")
            batch = await asyncio.wait_for(waiting, 10)
            if batch.events:
                assert batch.events == [event]
                resumed = Subscription(("r",), 1, since_time=event.timestamp, last_id=event.id)
            else:
                assert batch.timestamp < event.timestamp
                resumed = Subscription(("r",), 1, since_time=batch.timestamp)
                assert (await manager.wait_for_events(resumed)).events == [event]
                resumed = Subscription(("r",), 1, since_time=event.timestamp, last_id=event.id)
            assert (await manager.wait_for_events(resumed)).events == []


async def test_redis_outage_and_return(private_redis: RedisServer) -> None:
    backend = RedisBackend(private_redis.url, key_prefix="outage", health_check_seconds=0.5)
    manager = LongpollManager(backend=backend)
    async with serve_app(LongpollApp(manager)) as server, http_client(server.url) as client:
        before = await publish(client, "o", "before")
        waiting = asyncio.create_task(client.get("/events", params={"category": "o", "timeout": 2}))
        await wait_for_waiters(manager, 1)
        private_redis.stop()

        response = await client.post("/publish", json={"category": "o", "data": "lost"})
        assert response.status_code == 503
        assert "Redis" in response.json()["error"]
        with pytest.raises(BackendUnavailable):
            await manager.publish("o", "lost")
        # No safe resume point can be agreed without Redis: the waiting subscriber
        # is answered with the error, and retries from its own position.
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.status_code == 503
        assert "Redis" in answer.json()["error"]
        reading = await client.get(
            "/events", params={"category": "o", "timeout": 1, "since_time": -1}
        )
        assert reading.status_code == 503
        assert "error" in reading.json()

        private_redis.start()
        async with asyncio.timeout(10):
            while True:
                response = await client.post("/publish", json={"category": "o", "data": "back"})
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.1)
        back = response.json()
        assert back["timestamp"] >= before["timestamp"]
        # Wake-ups work again, without restarting the app. The poll resumes after
        # "back": the wake-up listener may still be reconnecting and hand "back"
        # to waiters late, which is right for a resume but not what is tested here.
        after_back = {"since_time": back["timestamp"], "last_id": back["id"]}
        resumed = asyncio.create_task(poll(client, category="o", timeout=10, **after_back))
        await wait_for_waiters(manager, 1)
        async with asyncio.timeout(10):
            while not resumed.done():
                await publish(client, "o", "again")
                await asyncio.sleep(0.5)
        assert resumed.result()["events"][0]["data"] == "again"


async def test_a_timeout_during_a_redis_pause_is_an_error_not_a_resume_point(
    private_redis: RedisServer,
) -> None:
    # A paused Redis (SIGSTOP: a stalled host, a long fork) answers nothing. A timeout
    # answer's timestamp must be safe to resume from; none can be agreed with Redis,
    # so the subscriber gets the error and resumes from its own position: it sees
    # every event once.
    assert private_redis.process is not None
    backend = RedisBackend(
        private_redis.url,
        key_prefix="pause",
        health_check_seconds=0.5,
        command_timeout_seconds=2,
    )
    manager = LongpollManager(backend=backend)
    async with serve_app(LongpollApp(manager)) as server, http_client(server.url) as client:
        first = await publish(client, "p", 1)
        position = {"since_time": first["timestamp"], "last_id": first["id"]}
        waiting = asyncio.create_task(
            client.get("/events", params={"category": "p", "timeout": 1, **position})
        )
        await wait_for_waiters(manager, 1)
        private_redis.process.send_signal(signal.SIGSTOP)
        try:
            answer = await asyncio.wait_for(waiting, 20)
        finally:
            private_redis.process.send_signal(signal.SIGCONT)
        assert answer.status_code == 503, answer.text
        assert "Redis" in answer.json()["error"]
        second = await publish(client, "p", 2)
        resumed = await poll(client, category="p", **position)
        assert [event["id"] for event in resumed["events"]] == [second["id"]]


class HeldWakeUps:
    """Holds what a backend's wake-up listener delivers, as a lagging listener would."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.deliver = backend._deliver
        # The listener reads the same entries again while its position stays put.
        self.held: dict[bytes, dict[bytes, bytes]] = {}
        backend._deliver = self.held.setdefault  # type: ignore[method-assign,assignment]

    async def release(self, count: int) -> None:
        """Once `count` entries are held, let the listener catch up with them."""
        async with asyncio.timeout(5):
            while len(self.held) < count:
                await asyncio.sleep(0.01)
            # The listener itself delivers them again: a read it sent while holding
            # may still be on its way, and delivering them from here too would
            # hand them out twice.
            self.backend._deliver = self.deliver  # type: ignore[method-assign]
            newest = max(_entry_position(entry_id) for entry_id in self.held)
            while self.backend._position < newest:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def lagging_listener(url: str) -> AsyncIterator[tuple[LongpollManager, HeldWakeUps]]:
    """A manager on Redis whose wake-up listener holds what it reads until released."""
    backend = RedisBackend(url, key_prefix=f"behind-{uuid.uuid4().hex}")
    async with LongpollManager(backend=backend) as manager:
        yield manager, HeldWakeUps(backend)


async def gets_only_later_events(
    manager: LongpollManager, wake_ups: HeldWakeUps, subscription: Subscription
) -> None:
    """`subscription` waits while the listener catches up: it gets only what comes next."""
    waiting = asyncio.create_task(manager.wait_for_events(subscription))
    await wait_for_waiters(manager, 1)
    await wake_ups.release(1)
    assert not waiting.done()
    later = await manager.publish(subscription.categories[0], "later")
    batch = await asyncio.wait_for(waiting, 5)
    assert batch.events == [later]


async def test_wakeup_behind_a_read_does_not_repeat_events(redis_server: RedisServer) -> None:
    # The wake-up listener of a process can lag behind what its requests read from
    # the history (an overloaded process, or a reconnecting listener). A subscriber
    # that read an event and resumes after it must not get it again from the
    # listener when it catches up.
    async with lagging_listener(redis_server.url) as (manager, wake_ups):
        event = await manager.publish("b", "read before its wake-up")
        first = await manager.wait_for_events(Subscription(("b",), 1, since_time=-1))
        assert first.events == [event]
        resumed = Subscription(("b",), 5, since_time=event.timestamp, last_id=event.id)
        await gets_only_later_events(manager, wake_ups, resumed)


async def test_no_position_gets_no_event_stored_before_the_request(
    redis_server: RedisServer,
) -> None:
    # Without since_time only what comes after the request counts, even when the
    # listener still has to deliver an event that this process stored before it.
    async with lagging_listener(redis_server.url) as (manager, wake_ups):
        await manager.publish("n", "stored before the request")
        await gets_only_later_events(manager, wake_ups, Subscription(("n",), 5))


async def test_far_future_position_gets_an_event_its_read_saw_stored(
    redis_server: RedisServer,
) -> None:
    # A position in the future waits for whatever comes next, even an event that
    # was stored just before the read while the listener lagged.
    async with lagging_listener(redis_server.url) as (manager, wake_ups):
        event = await manager.publish("f", "stored before the read")
        future = Subscription(("f",), 5, since_time=2**62)
        waiting = asyncio.create_task(manager.wait_for_events(future))
        await wait_for_waiters(manager, 1)
        await wake_ups.release(1)
        batch = await asyncio.wait_for(waiting, 5)
        assert batch.events == [event]


async def test_timeout_behind_a_read_does_not_repeat_events(redis_server: RedisServer) -> None:
    # As above, but the subscriber's wait times out before the listener delivered
    # the event it read: the events stored but not yet woken for must not
    # include it again.
    prefix = f"behind-{uuid.uuid4().hex}"
    backend = RedisBackend(redis_server.url, key_prefix=prefix)
    async with LongpollManager(backend=backend) as manager:
        # Hold back this process's wake-ups, as an overloaded process would.
        for task in backend._tasks:
            task.cancel()
        event = await manager.publish("t", "read before its wake-up")
        first = await manager.wait_for_events(Subscription(("t",), 1, since_time=-1))
        assert first.events == [event]
        resumed = Subscription(("t",), 1, since_time=event.timestamp, last_id=event.id)
        batch = await manager.wait_for_events(resumed)
        assert batch.events == []
        assert batch.timestamp >= event.timestamp
        # The timeout's timestamp is a safe resume point.
        later = await manager.publish("t", "later")
        found = await manager.wait_for_events(Subscription(("t",), 1, since_time=batch.timestamp))
        assert found.events == [later]
