"""A publish retried with its event id is stored once: memory, Redis, restarts, faults."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.redis_server import RedisServer
from longpoll import LongpollApp, LongpollManager, Options
from longpoll.backends.redis import RedisBackend
from tests.conftest import ServerFactory
from tests.servers import RunningServer, http_client, serve_app, serve_process, wait_for_waiters


async def publish(http: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await http.post("/publish", json=body, headers=headers)


async def everything(http: httpx.AsyncClient, category: str) -> list[dict[str, Any]]:
    answer = await http.get(
        "/events", params={"category": category, "timeout": 1, "since_time": -1}
    )
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json().get("events", [])
    return events


async def test_the_same_id_is_stored_once_and_answered_as_a_repeat(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    event_id = str(uuid.uuid4())
    first = await publish(client, {"category": "once", "data": 1, "id": event_id})
    again = await publish(client, {"category": "once", "data": 1, "id": event_id})
    assert first.status_code == again.status_code == 200
    assert first.json() == {"success": True, "id": event_id, "timestamp": first.json()["timestamp"]}
    assert again.json() == {**first.json(), "repeat": True}
    assert [event["id"] for event in await everything(client, "once")] == [event_id]
    # The id belongs to its category: another category stores its own event.
    other = await publish(client, {"category": "other", "data": 1, "id": event_id})
    assert "repeat" not in other.json()


async def test_the_idempotency_key_header_names_the_event_too(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    key = str(uuid.uuid4())
    first = await publish(client, {"category": "keyed", "data": 1}, **{"Idempotency-Key": key})
    again = await publish(client, {"category": "keyed", "data": 1, "id": key.upper()})
    assert first.json()["id"] == key
    assert again.json()["repeat"] is True
    assert len(await everything(client, "keyed")) == 1


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({"id": "not-a-uuid"}, {}, "id must be a UUID"),
        ({"id": 12}, {}, "id must be a UUID string"),
        ({}, {"Idempotency-Key": "nope"}, "the Idempotency-Key header must be a UUID"),
        (
            {"id": str(uuid.uuid4())},
            {"Idempotency-Key": str(uuid.uuid4())},
            "id and the Idempotency-Key header name different events",
        ),
    ],
)
async def test_a_bad_event_id_is_refused_and_stores_nothing(
    server: RunningServer,
    client: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str],
    message: str,
) -> None:
    answer = await publish(client, {"category": "bad-id", "data": 1, **body}, **headers)
    assert answer.status_code == 400
    assert answer.json() == {"error": message}
    assert await everything(client, "bad-id") == []


async def test_an_id_is_remembered_while_its_event_is_buffered(
    make_server: ServerFactory,
) -> None:
    async with (
        make_server(Options(max_event_buffer_size=2)) as server,
        http_client(server.url) as client,
    ):
        event_id = str(uuid.uuid4())
        await publish(client, {"category": "window", "data": "first", "id": event_id})
        for n in range(2):
            await publish(client, {"category": "window", "data": n})
        # Dropped from the buffer: the id is forgotten with it.
        later = await publish(client, {"category": "window", "data": "again", "id": event_id})
        assert "repeat" not in later.json()


async def test_a_publish_whose_answer_was_lost_is_stored_once_when_retried(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    event_id = str(uuid.uuid4())
    body = f'{{"category":"lost","data":1,"id":"{event_id}"}}'.encode()
    host, port = server.url.removeprefix("http://").split(":")
    waiting = asyncio.create_task(client.get("/events", params={"category": "lost", "timeout": 5}))
    await wait_for_waiters(server.manager, 1)
    # The publish goes out and the connection is cut before its answer is read.
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    await writer.drain()
    writer.transport.abort()
    delivered = (await waiting).json()["events"]
    retried = await publish(client, {"category": "lost", "data": 1, "id": event_id})
    assert retried.json()["repeat"] is True
    assert [event["id"] for event in delivered] == [event_id]
    assert [event["id"] for event in await everything(client, "lost")] == [event_id]


def test_an_id_stored_before_a_restart_is_a_repeat_after_it(tmp_path: Path) -> None:
    store = tmp_path / "events.jsonl"
    event_id = str(uuid.uuid4())
    body = {"category": "restart", "data": 1, "id": event_id}
    with serve_process("--persist", str(store)) as first:
        with httpx.Client(base_url=first.url) as http:
            assert http.post("/publish", json=body).status_code == 200
        code, output = first.stop(signal.SIGTERM)
        assert code == 0, output
    with (
        serve_process("--persist", str(store)) as second,
        httpx.Client(base_url=second.url) as http,
    ):
        again = http.post("/publish", json=body)
        assert again.json()["repeat"] is True
        events = http.get(
            "/events", params={"category": "restart", "timeout": 1, "since_time": -1}
        ).json()["events"]
        assert [event["id"] for event in events] == [event_id]


async def test_a_publish_during_a_redis_pause_is_unconfirmed_and_stored_once_on_retry(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        backend = RedisBackend(
            redis.url,
            key_prefix="unconfirmed",
            health_check_seconds=0.5,
            command_timeout_seconds=2,
        )
        manager = LongpollManager(backend=backend)
        async with serve_app(LongpollApp(manager)) as server, http_client(server.url) as client:
            await publish(client, {"category": "u", "data": "warm"})
            event_id = str(uuid.uuid4())
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            try:
                # Redis takes the script into its socket buffer and runs it once it
                # is resumed: the answer is lost, the event is stored.
                answer = await publish(client, {"category": "u", "data": 1, "id": event_id})
            finally:
                redis.process.send_signal(signal.SIGCONT)
            assert answer.status_code == 503
            assert answer.json()["code"] == "publish_unconfirmed"
            assert answer.json()["id"] == event_id
            assert "may have been stored" in answer.json()["error"]
            async with asyncio.timeout(15):
                while True:
                    retried = await publish(client, {"category": "u", "data": 1, "id": event_id})
                    if retried.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
            assert retried.json()["id"] == event_id
            ids = [event["id"] for event in await everything(client, "u")]
            assert ids.count(event_id) == 1
    finally:
        redis.stop()
