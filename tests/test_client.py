"""The Python clients against real servers on loopback ports (and their pure core)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import itertools
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from longpoll import (
    ClientError,
    ConnectionFailed,
    InvalidRequest,
    LongpollApp,
    LongpollError,
    LongpollManager,
    Options,
    ProtocolError,
    ServerError,
)
from longpoll.client import AsyncClient, Client, Published, ReceivedEvent
from longpoll.client._core import Backoff, StreamState, make_settings, retried_by_default
from longpoll.types import Receive, Scope, Send
from tests.servers import RunningServer, serve_app, serve_until_crash, wait_for_waiters

ROOT = Path(__file__).resolve().parent.parent

FAST = {"poll_timeout_seconds": 1, "retry_wait_seconds": 0.02, "max_retry_wait_seconds": 0.1}
"""Short polls and waits, so that no test waits long for anything."""


def async_client(url: str, **options: Any) -> AsyncClient:
    return AsyncClient(f"{url}/events", publish_url=f"{url}/publish", **{**FAST, **options})


def sync_client(url: str, **options: Any) -> Client:
    return Client(f"{url}/events", publish_url=f"{url}/publish", **{**FAST, **options})


@contextlib.asynccontextmanager
async def serve(options: Options | None = None) -> AsyncIterator[RunningServer]:
    async with serve_app(LongpollApp(LongpollManager(options))) as running:
        yield running


def free_port() -> int:
    """A loopback port where nothing listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def within(seconds: float, awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


# --- delivery: order, exactly once, resume -----------------------------------------


async def publish_in_bursts(manager: LongpollManager, count: int, burst: int) -> list[uuid.UUID]:
    """Publish 0..count-1 alternately on categories a and b, `burst` per loop turn."""
    ids = []
    for start in range(0, count, burst):
        for number in range(start, min(start + burst, count)):
            event = await manager.publish("ab"[number % 2], number)
            ids.append(event.id)
        await asyncio.sleep(0.002)
    return ids


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_bursts_arrive_in_order_exactly_once(flavour: str) -> None:
    count = 1000
    async with serve(Options(max_event_buffer_size=count)) as server:
        received: list[ReceivedEvent] = []
        if flavour == "async":
            client = async_client(server.url)

            async def consume() -> None:
                async for event in client.subscribe("a", "b"):
                    received.append(event)
                    if len(received) == count:
                        break

            consumer = asyncio.create_task(consume())
        else:
            sync = sync_client(server.url)

            def consume_sync() -> None:
                for event in sync.subscribe("a", "b"):
                    received.append(event)
                    if len(received) == count:
                        break

            consumer = asyncio.create_task(asyncio.to_thread(consume_sync))
        await wait_for_waiters(server.manager, 1)
        ids = await publish_in_bursts(server.manager, count, burst=100)
        await within(20, consumer)
        if flavour == "async":
            await client.aclose()
        else:
            sync.close()
    assert [event.data for event in received] == list(range(count))
    assert [event.id for event in received] == ids
    assert [event.category for event in received[:4]] == ["a", "b", "a", "b"]
    assert not any(event.after_gap for event in received)


async def test_timeouts_move_the_position_and_lose_nothing() -> None:
    async with serve() as server, async_client(server.url) as client:
        stream = client.subscribe("c")
        first = asyncio.create_task(anext(stream))
        await wait_for_waiters(server.manager, 1)
        await asyncio.sleep(1.2)  # the first poll times out, the next one waits
        await wait_for_waiters(server.manager, 1)
        assert stream.since_time is not None and stream.last_id is None
        published = await client.publish("c", "after a timeout")
        event = await within(5, first)
        assert (event.data, event.id, event.timestamp) == (
            "after a timeout",
            published.id,
            published.timestamp,
        )
        assert (stream.since_time, stream.last_id) == (event.timestamp, event.id)
        await stream.aclose()


async def test_a_stream_resumes_from_the_position_of_another() -> None:
    async with serve() as server, async_client(server.url) as client:
        for number in range(5):
            await server.manager.publish("c", number)
        first = client.subscribe("c", since=-1)
        async for event in first:
            if event.data == 2:
                break
        assert first.last_id == event.id
        second = client.subscribe("c", since=first.since_time or 0, last_id=first.last_id)
        rest = [(await anext(second)).data for _ in range(2)]
        assert rest == [3, 4]
        await second.aclose()


async def test_since_a_datetime() -> None:
    async with serve() as server, async_client(server.url) as client:
        await server.manager.publish("c", "old")
        await asyncio.sleep(0.01)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await server.manager.publish("c", "new")
        stream = client.subscribe("c", since=middle)
        assert (await anext(stream)).data == "new"
        await stream.aclose()


async def test_gap_signal_marks_the_first_event_after_it() -> None:
    async with serve(Options(max_event_buffer_size=5)) as server, async_client(server.url) as c:
        events = [await server.manager.publish("c", number) for number in range(10)]
        # The stream's position is event 0; events 1 to 4 were dropped from the buffer.
        stream = c.subscribe("c", since=events[0].timestamp, last_id=events[0].id)
        received = [await anext(stream) for _ in range(5)]
        await stream.aclose()
        without_gap = c.subscribe("c", since=events[4].timestamp, last_id=events[4].id)
        after_four = await anext(without_gap)
        await without_gap.aclose()
    assert [event.data for event in received] == [5, 6, 7, 8, 9]
    assert [event.after_gap for event in received] == [True, False, False, False, False]
    assert (after_four.data, after_four.after_gap) == (5, False)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_resume_across_a_server_restart(flavour: str) -> None:
    failures: list[ClientError] = []

    def on_failure(error: ClientError) -> bool:
        failures.append(error)
        return True

    async with LongpollManager() as manager:
        received: list[Any] = []
        enough = 30
        app = LongpollApp(manager)
        async with serve_until_crash(app) as url:
            if flavour == "async":
                client = async_client(url, on_failure=on_failure)

                async def consume() -> None:
                    async for event in client.subscribe("c"):
                        received.append(event.data)
                        if len(received) == enough:
                            break

                consumer = asyncio.create_task(consume())
            else:
                sync = sync_client(url, on_failure=on_failure)

                def consume_sync() -> None:
                    for event in sync.subscribe("c"):
                        received.append(event.data)
                        if len(received) == enough:
                            break

                consumer = asyncio.create_task(asyncio.to_thread(consume_sync))
            await wait_for_waiters(manager, 1)
            for number in range(10):
                await manager.publish("c", number)
            async with asyncio.timeout(5):
                while len(received) < 10:
                    await asyncio.sleep(0.005)
            await wait_for_waiters(manager, 1)
        # Down: the client's poll broke and its retries are refused.
        for number in range(10, 20):
            await manager.publish("c", number)
        async with asyncio.timeout(5):
            while not failures:
                await asyncio.sleep(0.005)
        async with serve_until_crash(app, int(url.rsplit(":", 1)[1])):
            await within(10, wait_for_waiters(manager, 1))
            for number in range(20, 30):
                await manager.publish("c", number)
            await within(10, consumer)
        if flavour == "async":
            await client.aclose()
        else:
            sync.close()
    assert received == list(range(30))
    assert all(isinstance(error, ConnectionFailed) for error in failures)


# --- failures and back-off -----------------------------------------------------------


async def test_on_failure_gets_the_server_error_and_false_stops() -> None:
    calls: list[ClientError] = []

    def on_failure(error: ClientError) -> bool:
        calls.append(error)
        return len(calls) < 3

    async with serve() as server:
        # 200 s is above the server's largest timeout (110 s): it answers 400.
        client = async_client(server.url, poll_timeout_seconds=200, on_failure=on_failure)
        started = time.monotonic()
        with pytest.raises(ServerError) as raised:
            async for _ in client.subscribe("c"):
                pass
        await client.aclose()
    assert time.monotonic() - started < 2
    assert len(calls) == 3
    assert raised.value is calls[-1]
    assert raised.value.status == 400
    assert raised.value.message == "timeout must be between 1 and 110 seconds"
    assert str(raised.value) == "server answered 400: timeout must be between 1 and 110 seconds"


def test_sync_on_failure_false_stops_with_the_error() -> None:
    calls: list[ClientError] = []

    def on_failure(error: ClientError) -> bool:
        calls.append(error)
        return False

    with sync_client(f"http://127.0.0.1:{free_port()}", on_failure=on_failure) as client:
        stream = client.subscribe("c")
        with pytest.raises(ConnectionFailed, match=r"cannot reach http://127\.0\.0\.1:"):
            next(stream)
        assert len(calls) == 1
        with pytest.raises(StopIteration):  # a stream that raised has ended
            next(stream)


async def test_without_on_failure_a_rejected_poll_raises_at_once() -> None:
    async with serve() as server, async_client(server.url, poll_timeout_seconds=200) as client:
        with pytest.raises(ServerError, match="timeout must be between"):
            await within(2, anext(client.subscribe("c")))


def test_default_policy_retries_only_what_waiting_can_cure() -> None:
    assert retried_by_default(ConnectionFailed("refused"))
    assert retried_by_default(ServerError(503, "server is shutting down"))
    assert retried_by_default(ServerError(429, "slow down"))
    assert not retried_by_default(ServerError(400, "bad"))
    assert not retried_by_default(ServerError(401, "who are you"))
    assert not retried_by_default(ServerError(200, "golongpoll's way"))
    assert not retried_by_default(ProtocolError("not JSON"))


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    low = Backoff(0.5, 4.0, jitter=lambda: 0.0)
    high = Backoff(0.5, 4.0, jitter=lambda: 1.0)
    assert [low.delay(n) for n in range(7)] == [0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [high.delay(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert high.delay(10_000) == 4.0
    spread = {Backoff(1.0, 1.0).delay(1) for _ in range(50)}
    assert len(spread) > 40 and all(0.5 <= delay <= 1.0 for delay in spread)


def failure_times(calls: list[float], stop_after: int) -> Callable[[ClientError], bool]:
    def on_failure(error: ClientError) -> bool:
        calls.append(time.monotonic())
        return len(calls) < stop_after

    return on_failure


def check_backoff(calls: list[float], first: float, cap: float) -> None:
    """The waits between failures grow as the back-off says (plus scheduling slack)."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    for failures, gap in enumerate(gaps, start=1):
        ceiling = min(cap, first * 2 ** (failures - 1))
        assert ceiling / 2 - 0.005 <= gap <= ceiling + 0.15, (failures, gaps)


async def test_async_backoff_timing() -> None:
    calls: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    options = {"retry_wait_seconds": 0.04, "max_retry_wait_seconds": 0.16}
    async with async_client(url, on_failure=failure_times(calls, 6), **options) as client:
        with pytest.raises(ConnectionFailed):
            await within(5, anext(client.subscribe("c")))
    assert len(calls) == 6
    check_backoff(calls, 0.04, 0.16)


def test_sync_backoff_timing() -> None:
    calls: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    options = {"retry_wait_seconds": 0.04, "max_retry_wait_seconds": 0.16}
    with (
        sync_client(url, on_failure=failure_times(calls, 6), **options) as client,
        pytest.raises(ConnectionFailed),
    ):
        next(client.subscribe("c"))
    assert len(calls) == 6
    check_backoff(calls, 0.04, 0.16)


# --- what reaches the server -----------------------------------------------------------


class RecordingApp:
    """Records each HTTP request's headers; with `password`, answers 401 to others."""

    def __init__(self, app: LongpollApp, password: str | None = None) -> None:
        self.app = app
        self.password = password
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {key.decode(): value.decode() for key, value in scope["headers"]}
            self.requests.append((scope["path"], headers))
            expected = f"Basic {base64.b64encode(f'ann:{self.password}'.encode()).decode()}"
            if self.password is not None and headers.get("authorization") != expected:
                body = b'{"error":"who are you?"}'
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_basic_auth_and_headers_reach_the_server(flavour: str) -> None:
    manager = LongpollManager()
    app = RecordingApp(LongpollApp(manager), password="s3cret")
    options: dict[str, Any] = {"basic_auth": ("ann", "s3cret"), "headers": {"X-Team": "blue"}}
    async with serve_app(app, manager) as server:
        if flavour == "async":
            async with async_client(server.url, **options) as client:
                await client.publish("c", 1)
                event = await within(5, anext(client.subscribe("c", since=-1)))
        else:

            def run() -> ReceivedEvent:
                with sync_client(server.url, **options) as client:
                    client.publish("c", 1)
                    return next(client.subscribe("c", since=-1))

            event = await asyncio.to_thread(run)
        assert event.data == 1
        async with async_client(server.url) as stranger:
            with pytest.raises(ServerError) as refused:
                await stranger.publish("c", 2)
            with pytest.raises(ServerError):
                await within(5, anext(stranger.subscribe("c")))
    assert (refused.value.status, refused.value.message) == (401, "who are you?")
    paths = [path for path, _ in app.requests[:2]]
    assert paths == ["/publish", "/events"]
    for _, headers in app.requests[:2]:
        assert headers["x-team"] == "blue"
        assert headers["authorization"].startswith("Basic ")


async def test_a_callers_http_client_is_used_and_left_open() -> None:
    async with serve() as server:
        seen: list[str] = []

        async def note(request: httpx.Request) -> None:
            seen.append(request.url.path)

        async with httpx.AsyncClient(event_hooks={"request": [note]}) as http:
            async with async_client(server.url, http_client=http) as client:
                await client.publish("c", "x")
                assert (await within(5, anext(client.subscribe("c", since=-1)))).data == "x"
            assert not http.is_closed
    assert seen == ["/publish", "/events"]


# --- stopping -----------------------------------------------------------------------


async def test_cancelling_the_task_ends_the_request_at_once() -> None:
    async with serve() as server, async_client(server.url, poll_timeout_seconds=30) as client:
        task = asyncio.create_task(anext(client.subscribe("c")))
        await wait_for_waiters(server.manager, 1)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for_waiters(server.manager, 0)
        assert time.monotonic() - started < 0.5


async def test_aclose_from_another_task_ends_the_loop_at_once() -> None:
    async with serve() as server, async_client(server.url, poll_timeout_seconds=30) as client:
        stream = client.subscribe("c")
        received = []

        async def consume() -> None:
            async for event in stream:
                received.append(event)

        consumer = asyncio.create_task(consume())
        await wait_for_waiters(server.manager, 1)
        started = time.monotonic()
        await stream.aclose()
        await within(1, consumer)  # ends normally: no exception
        await wait_for_waiters(server.manager, 0)
        assert time.monotonic() - started < 0.5
        assert received == []
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_leaving_the_loop_leaves_nothing_waiting() -> None:
    async with serve() as server, async_client(server.url, poll_timeout_seconds=30) as client:
        await server.manager.publish("c", 1)
        await server.manager.publish("c", 2)
        async for event in client.subscribe("c", since=-1):
            assert event.data == 1
            break
        assert (await server.manager.stats()).waiting_subscribers == 0


async def test_stopping_during_a_backoff_wait_ends_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    options = {"retry_wait_seconds": 30.0, "max_retry_wait_seconds": 30.0}
    async with async_client(url, on_failure=lambda error: True, **options) as client:
        stream = client.subscribe("c")
        consumer = asyncio.create_task(anext(stream, None))
        await asyncio.sleep(0.2)  # refused at once, now waiting 15 to 30 s
        await stream.aclose()
        assert await within(1, consumer) is None


async def test_aclose_of_the_client_stops_its_streams() -> None:
    async with serve() as server:
        client = async_client(server.url, poll_timeout_seconds=30)
        consumer = asyncio.create_task(anext(client.subscribe("c"), None))
        await wait_for_waiters(server.manager, 1)
        await within(1, client.aclose())
        assert await within(1, consumer) is None
        await wait_for_waiters(server.manager, 0)
        with pytest.raises(ClientError, match="closed"):
            await client.publish("c", 1)


def stop_soon(stop: Callable[[], None], after: float = 0.3) -> threading.Thread:
    timer = threading.Timer(after, stop)
    timer.start()
    return timer


async def test_sync_stop_from_another_thread_ends_the_poll_at_once() -> None:
    async with serve() as server:
        client = sync_client(server.url, poll_timeout_seconds=30)
        stream = client.subscribe("c")
        consumer = asyncio.create_task(asyncio.to_thread(list, stream))
        await wait_for_waiters(server.manager, 1)
        started = time.monotonic()
        stream.stop()
        assert await within(1, consumer) == []
        await wait_for_waiters(server.manager, 0)
        assert time.monotonic() - started < 0.5
        client.close()


async def test_sync_close_of_the_client_stops_its_streams() -> None:
    async with serve() as server:
        client = sync_client(server.url, poll_timeout_seconds=30)
        consumer = asyncio.create_task(asyncio.to_thread(list, client.subscribe("a", "b")))
        await wait_for_waiters(server.manager, 1)
        await asyncio.to_thread(client.close)
        assert await within(1, consumer) == []
        await wait_for_waiters(server.manager, 0)


async def test_sync_stop_with_a_callers_http_client() -> None:
    async with serve() as server:
        with httpx.Client() as http:
            client = sync_client(server.url, poll_timeout_seconds=30, http_client=http)
            stream = client.subscribe("c")
            consumer = asyncio.create_task(asyncio.to_thread(list, stream))
            await wait_for_waiters(server.manager, 1)
            stream.stop()
            assert await within(1, consumer) == []
            await wait_for_waiters(server.manager, 0)
            client.close()
            assert not http.is_closed


def test_sync_stop_during_a_backoff_wait() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    options = {"retry_wait_seconds": 30.0, "max_retry_wait_seconds": 30.0}
    with sync_client(url, on_failure=lambda error: True, **options) as client:
        stream = client.subscribe("c")
        timer = stop_soon(stream.stop)
        started = time.monotonic()
        assert list(stream) == []
        assert time.monotonic() - started < 1
        timer.join()


async def test_sync_client_in_a_plain_thread() -> None:
    async with serve() as server:
        results: dict[str, Any] = {}

        def run() -> None:
            with sync_client(server.url) as client:
                stream = client.subscribe("c", since="now")
                published = [client.publish("c", {"n": n}) for n in range(3)]
                # The stream starts with its first poll: since="now" would miss these.
                replay = client.subscribe("c", since=-1)
                results["replayed"] = [next(replay).data for _ in range(3)]
                results["ids"] = [p.id for p in published]
                results["stream"] = stream
                stream.close()

        thread = threading.Thread(target=run)
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
    assert results["replayed"] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(isinstance(event_id, uuid.UUID) for event_id in results["ids"])


# --- publish and the protocol's edges ---------------------------------------------------


async def test_publish_acknowledges_and_reports_refusals() -> None:
    async with serve() as server, async_client(server.url) as client:
        published = await client.publish("c", {"title": "hello"})
        assert isinstance(published.id, uuid.UUID) and isinstance(published.timestamp, int)
        with pytest.raises(InvalidRequest, match="data must not be null"):
            await client.publish("c", None)
        with pytest.raises(InvalidRequest, match="at most 1024 bytes"):
            await client.publish("x" * 1025, 1)
        url = f"{server.url}/events"
        async with AsyncClient(url, publish_url=url) as wrong:
            with pytest.raises(ServerError) as refused:
                await wrong.publish("c", 1)
    assert (refused.value.status, refused.value.message) == (405, "use GET to subscribe")
    async with async_client(f"http://127.0.0.1:{free_port()}") as unreachable:
        with pytest.raises(ConnectionFailed, match=r"cannot reach http://127\.0\.0\.1:\d+/publish"):
            await unreachable.publish("c", 1)


async def test_publish_without_a_publish_url() -> None:
    async with AsyncClient("http://127.0.0.1:8101/events") as client:
        with pytest.raises(ClientError, match="no publish_url"):
            await client.publish("c", 1)


def golongpoll_like(answers: dict[str, tuple[int, bytes]]) -> httpx.MockTransport:
    """A transport answering each path like golongpoll would (our server's tests use real ones)."""

    def answer(request: httpx.Request) -> httpx.Response:
        status, body = answers[request.url.path]
        return httpx.Response(status, content=body)

    return httpx.MockTransport(answer)


def test_golongpoll_answers() -> None:
    event = {"timestamp": 1, "category": "c", "data": "x", "id": str(uuid.uuid4())}
    transport = golongpoll_like(
        {
            "/publish": (200, b'{"success": true}'),
            "/events": (200, orjson.dumps({"events": [event]})),
            "/bad": (200, b'{"error": "Invalid timeout arg."}'),
        }
    )
    with Client("http://go/events", publish_url="http://go/publish", transport=transport) as go:
        assert go.publish("c", "x") == Published(None, None)
        assert next(go.subscribe("c")).to_dict() == event
    with (
        Client("http://go/bad", transport=transport) as go,
        pytest.raises(ServerError, match="Invalid timeout arg") as raised,
    ):
        next(go.subscribe("c"))
    assert raised.value.status == 200


def state(**options: Any) -> StreamState:
    settings = make_settings("http://h/events?token=t", None, 45, 1.0, 30.0, 0.0, None, None, None)
    return StreamState(settings, ("a", "b"), **{"since_time": None, "last_id": None, **options})


def event_json(timestamp: int, event_id: uuid.UUID, data: Any = 1) -> dict[str, Any]:
    return {"timestamp": timestamp, "category": "a", "data": data, "id": str(event_id)}


def test_core_poll_url_and_resume_position() -> None:
    stream = state()
    assert str(stream.poll_url()) == "http://h/events?token=t&category=a&category=b&timeout=45"
    first, second = uuid.uuid4(), uuid.uuid4()
    answer = orjson.dumps({"events": [event_json(5, first), event_json(5, second)]})
    events = stream.received(200, answer)
    for event in events:
        stream.advance(event)
    assert str(stream.poll_url()).endswith(f"timeout=45&since_time=5&last_id={second}")
    # A server that sends the same millisecond again (golongpoll does when last_id is
    # not buffered) causes no duplicate.
    third = uuid.uuid4()
    again = orjson.dumps(
        {"events": [event_json(5, first), event_json(5, second), event_json(5, third)]}
    )
    assert [event.id for event in stream.received(200, again)] == [third]
    # A timeout's timestamp moves the position only forward.
    stream.received(200, b'{"timeout": "no events before timeout", "timestamp": 4}')
    assert (stream.since_time, stream.last_id) == (5, second)
    stream.received(200, b'{"timeout": "no events before timeout", "timestamp": 9}')
    assert (stream.since_time, stream.last_id) == (9, None)


def test_core_gap_of_a_timeout_marks_the_next_event() -> None:
    stream = state(since_time=1)
    assert (
        stream.received(200, b'{"timeout":"no events before timeout","timestamp":3,"missed":true}')
        == []
    )
    first = stream.received(200, orjson.dumps({"events": [event_json(4, uuid.uuid4())]}))
    later = stream.received(200, orjson.dumps({"events": [event_json(5, uuid.uuid4())]}))
    assert [first[0].after_gap, later[0].after_gap] == [True, False]


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (200, b"<html>hello</html>", ProtocolError, "not a JSON object: '<html>hello</html>'"),
        (200, b'{"events": {}}', ProtocolError, "not a list"),
        (
            200,
            b'{"events": [{"timestamp": 1, "category": "a", "id": "x"}]}',
            ProtocolError,
            "not a UUID",
        ),
        (200, b'{"events": [{"timestamp": "1", "category": "a"}]}', ProtocolError, "timestamp"),
        (200, b'{"something": "else"}', ProtocolError, "neither events nor a timeout"),
        (200, b'{"error": "Invalid category arg."}', ServerError, "200: Invalid category arg."),
        (
            502,
            b"<html>Bad Gateway</html>",
            ServerError,
            "502: Bad Gateway, not JSON: likely from a proxy in front of the server, "
            "which could not reach it",
        ),
        (
            504,
            b"<html><body>504 Gateway Time-out</body></html>",
            ServerError,
            "proxy's read timeout (nginx: proxy_read_timeout) must be longer",
        ),
        (503, b"", ServerError, "503: Service Unavailable"),
    ],
)
def test_core_answers_that_are_not_events(
    status: int, body: bytes, error: type[LongpollError], message: str
) -> None:
    reason = httpx.codes.get_reason_phrase(status)
    with pytest.raises(error) as raised:
        state().received(status, body, reason)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"poll_timeout_seconds": 0}, "poll_timeout_seconds must be a whole number"),
        ({"poll_timeout_seconds": 1.5}, "poll_timeout_seconds"),
        ({"retry_wait_seconds": 0}, "retry_wait_seconds must be a positive number"),
        ({"retry_wait_seconds": 5, "max_retry_wait_seconds": 1}, "must not be less"),
        ({"success_wait_seconds": -1}, "success_wait_seconds must be a non-negative"),
        ({"basic_auth": ("only-a-name",)}, "basic_auth must be a (username, password) pair"),
        ({"publish_url": "ftp://h/publish"}, "publish_url must be an absolute http"),
        ({"http_client": httpx.AsyncClient(), "transport": httpx.AsyncHTTPTransport()}, "not both"),
    ],
)
async def test_bad_options_raise_value_error_naming_them(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AsyncClient("http://127.0.0.1:8101/events", **options)
    for value in options.values():
        if isinstance(value, httpx.AsyncClient):
            await value.aclose()


@pytest.mark.parametrize(
    ("categories", "since", "last_id", "message"),
    [
        ((), "now", None, "at least one category"),
        (("",), "now", None, "category must not be empty"),
        (("c",), "yesterday", None, "since must be a datetime"),
        (("c",), True, None, "since must be a datetime"),
        (("c",), "now", uuid.uuid4(), "last_id needs since"),
        (("c",), 5, "not-a-uuid", "last_id must be a UUID"),
    ],
)
def test_bad_subscribe_arguments_raise_invalid_request(
    categories: tuple[str, ...], since: Any, last_id: Any, message: str
) -> None:
    with (
        Client("http://127.0.0.1:8101/events") as client,
        pytest.raises(InvalidRequest, match=message),
    ):
        client.subscribe(*categories, since=since, last_id=last_id)


# --- the README's examples -----------------------------------------------------------


@pytest.mark.parametrize("name", ["client_async", "client_sync"])
def test_readme_shows_the_client_examples_verbatim(name: str) -> None:
    source = (ROOT / "docs" / "examples" / f"{name}.py").read_text()
    assert source.strip() in (ROOT / "README.md").read_text()


async def test_async_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module("docs.examples.client_async")
    async with serve() as server:
        await within(5, module.main(server.url))
    assert capsys.readouterr().out.splitlines() == ["news {'title': 'hello'}", "weather sunny"]


async def test_sync_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module("docs.examples.client_sync")
    async with serve() as server:
        await within(5, asyncio.to_thread(module.main, server.url))
    assert capsys.readouterr().out.splitlines() == ["hi", "how are you?", "bye"]
