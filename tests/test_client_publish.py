"""The Python clients' publish: one id for every attempt, retried until stored once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
import pytest

from longpoll import LongpollApp, LongpollManager
from longpoll.client import AsyncClient, Client, ConnectionFailed, ServerError
from longpoll.client._core import Publishing, make_settings
from longpoll.types import Message, Receive, Scope, Send
from tests.servers import RunningServer, serve_app


class Faulty:
    """Serves `app`, but spoils the answers of the first `count` publishes: after the
    app stored the event (`lost`), or instead of passing the request on."""

    def __init__(
        self, app: LongpollApp, count: int, status: int = 503, *, lost: bool = True
    ) -> None:
        self.app = app
        self.count = count
        self.status = status
        self.lost = lost
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/publish":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(orjson.loads(body))

        async def replay() -> Message:
            return {"type": "http.request", "body": body}

        if self.count <= 0:
            await self.app(scope, replay, send)
            return
        self.count -= 1
        if self.lost:

            async def swallow(message: Message) -> None:
                pass

            await self.app(scope, replay, swallow)  # stored, its answer lost
        answer = orjson.dumps({"error": "store unavailable", "code": "publish_unconfirmed"})
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"0")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


async def stored(server: RunningServer, category: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.get(
            "/events", params={"category": category, "timeout": 1, "since_time": -1}
        )
    events: list[dict[str, Any]] = answer.json().get("events", [])
    return events


def client_for(server: RunningServer) -> AsyncClient:
    return AsyncClient(
        f"{server.url}/events",
        publish_url=f"{server.url}/publish",
        retry_wait_seconds=0.01,
        max_retry_wait_seconds=0.05,
    )


async def test_every_publish_carries_an_id_and_a_repeat_says_so() -> None:
    manager = LongpollManager()
    async with serve_app(LongpollApp(manager)) as server, client_for(server) as client:
        first = await client.publish("p", 1)
        assert first.id is not None and first.repeat is False
        chosen = uuid.uuid4()
        once = await client.publish("p", 2, event_id=chosen)
        again = await client.publish("p", 2, event_id=str(chosen))
        assert once.id == again.id == chosen
        assert (once.repeat, again.repeat) == (False, True)
        assert once.timestamp == again.timestamp
        assert [event["data"] for event in await stored(server, "p")] == [1, 2]


async def test_a_publish_whose_answer_was_lost_is_sent_again_and_stored_once() -> None:
    manager = LongpollManager()
    faulty = Faulty(LongpollApp(manager), count=2)
    async with serve_app(faulty, manager, portable=True) as server, client_for(server) as client:
        published = await client.publish("lost", {"n": 1})
        assert published.repeat is True
        ids = {body["id"] for body in faulty.bodies}
        assert ids == {str(published.id)}  # three attempts, one id
        assert len(faulty.bodies) == 3
        assert [event["id"] for event in await stored(server, "lost")] == [str(published.id)]


async def test_a_publish_refused_before_storing_is_stored_by_a_later_attempt() -> None:
    manager = LongpollManager()
    faulty = Faulty(LongpollApp(manager), count=1, status=502, lost=False)
    async with serve_app(faulty, manager, portable=True) as server, client_for(server) as client:
        published = await client.publish("refused", 1)
        assert published.repeat is False
        assert len(await stored(server, "refused")) == 1


async def test_a_publish_gives_up_after_its_attempts() -> None:
    manager = LongpollManager()
    faulty = Faulty(LongpollApp(manager), count=100)
    async with serve_app(faulty, manager, portable=True) as server, client_for(server) as client:
        with pytest.raises(ServerError) as raised:
            await client.publish("down", 1)
        assert raised.value.status == 503
        assert len(faulty.bodies) == 5  # the default publish_attempts
        assert len({body["id"] for body in faulty.bodies}) == 1
        # Stored by the first attempt, all the same: the later ones were repeats.
        assert len(await stored(server, "down")) == 1


async def test_a_refusal_is_not_sent_again() -> None:
    manager = LongpollManager()
    faulty = Faulty(LongpollApp(manager), count=1, status=400, lost=False)
    async with serve_app(faulty, manager, portable=True) as server, client_for(server) as client:
        with pytest.raises(ServerError):
            await client.publish("refused", 1)
        assert len(faulty.bodies) == 1


async def test_no_server_gives_up_with_a_connection_failure() -> None:
    async with serve_app(LongpollApp(LongpollManager())) as server:
        url = server.url
    async with AsyncClient(
        f"{url}/events",
        publish_url=f"{url}/publish",
        retry_wait_seconds=0.01,
        max_retry_wait_seconds=0.02,
    ) as client:
        with pytest.raises(ConnectionFailed):
            await client.publish("nobody", 1)


async def test_the_sync_client_sends_the_same_id_again() -> None:
    manager = LongpollManager()
    faulty = Faulty(LongpollApp(manager), count=1)
    async with serve_app(faulty, manager, portable=True) as server:

        def publish() -> Any:
            with Client(
                f"{server.url}/events",
                publish_url=f"{server.url}/publish",
                retry_wait_seconds=0.01,
                max_retry_wait_seconds=0.02,
            ) as client:
                return client.publish("sync", 1)

        published = await asyncio.to_thread(publish)
        assert published.repeat is True
        assert len({body["id"] for body in faulty.bodies}) == 1
        assert len(await stored(server, "sync")) == 1


def test_retry_after_makes_the_wait_at_least_that_long() -> None:
    settings = make_settings(
        "http://127.0.0.1:1/events", None, 45, 0.01, 5.0, 0.0, None, None, None
    )
    publishing = Publishing(settings, "c", 1, jitter=lambda: 0.0)
    error = ServerError(429, "too many publishes")
    wait = publishing.retry_after(error, "3")
    assert wait is not None and wait >= 3.0
    assert publishing.retry_after(ServerError(400, "bad")) is None
