"""Waiting subscribers over real HTTP: disconnects, shutdown, slow readers, many waiters."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from tests.conftest import ServerFactory
from tests.servers import RunningServer, http_client, wait_for_waiters


async def open_subscriber(
    url: str, query: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /events?{query} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await reader.readexactly(length)


async def test_disconnect_while_waiting_leaves_nothing(make_server: ServerFactory) -> None:
    async with make_server() as server:
        connections = [
            await open_subscriber(server.url, "category=c&timeout=60") for _ in range(20)
        ]
        await wait_for_waiters(server.manager, 20)
        for _, writer in connections:
            writer.close()
        await wait_for_waiters(server.manager, 0)
        # Their request tasks end too (a few may still be finishing).
        async with asyncio.timeout(5):
            while len(asyncio.all_tasks()) >= 10:
                await asyncio.sleep(0.01)
        # Publishing afterwards reaches nobody and breaks nothing.
        event = await server.manager.publish("c", "after")
        assert (await server.manager.stats()).buffered_events == 1
        assert event.category == "c"


async def test_delete_after_first_keeps_event_nobody_received(make_server: ServerFactory) -> None:
    from longpoll import Options

    async with make_server(Options(delete_event_after_first_retrieval=True)) as server:
        _, writer = await open_subscriber(server.url, "category=c&timeout=60")
        await wait_for_waiters(server.manager, 1)
        writer.close()
        await wait_for_waiters(server.manager, 0)
        await server.manager.publish("c", "kept")
        async with http_client(server.url) as client:
            body = (await client.get("/events?category=c&timeout=1&since_time=-1")).json()
        assert [event["data"] for event in body["events"]] == ["kept"]


async def test_shutdown_answers_waiters_at_once(make_server: ServerFactory) -> None:
    async with make_server() as server:
        async with http_client(server.url) as client:
            waiting = [
                asyncio.create_task(client.get("/events?category=c&timeout=60")) for _ in range(5)
            ]
            await wait_for_waiters(server.manager, 5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            server.manager.begin_shutdown()
            responses = await asyncio.wait_for(asyncio.gather(*waiting), 5)
            assert loop.time() - started < 1
            for response in responses:
                assert response.status_code == 200
                assert response.json()["timeout"] == "no events before timeout"
            refused = await client.get("/events?category=c&timeout=5")
            assert refused.status_code == 503
            assert "shutting down" in refused.json()["error"]
            publish = await client.post("/publish", json={"category": "c", "data": 1})
            assert publish.status_code == 503
        assert (await server.manager.stats()).waiting_subscribers == 0


async def test_client_that_never_reads_does_not_hold_up_others(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    # This subscriber never reads: its 4 MiB response cannot fit in the socket buffers.
    stalled_reader, stalled = await open_subscriber(server.url, "category=big&timeout=60")
    await wait_for_waiters(server.manager, 1)
    waiting = asyncio.create_task(client.get("/events?category=small&timeout=30"))
    await wait_for_waiters(server.manager, 2)
    await server.manager.publish("big", "x" * (4 * 1024 * 1024))
    await server.manager.publish("small", "y")
    response = await asyncio.wait_for(waiting, 5)
    assert response.json()["events"][0]["data"] == "y"
    caught_up = await client.get("/events?category=big&timeout=1&since_time=-1")
    assert len(caught_up.json()["events"][0]["data"]) == 4 * 1024 * 1024
    stalled.close()
    await wait_for_waiters(server.manager, 0)
    del stalled_reader


async def test_many_waiters_all_receive_one_publish(server: RunningServer) -> None:
    count = 2000
    subscribers = [
        await open_subscriber(server.url, "category=fan&timeout=60") for _ in range(count)
    ]
    await wait_for_waiters(server.manager, count)
    event = await server.manager.publish("fan", {"n": 1})
    async with asyncio.timeout(20):
        responses = await asyncio.gather(*(read_response(reader) for reader, _ in subscribers))
    for status, body in responses:
        assert status == 200
        assert orjson.loads(body)["events"][0]["id"] == str(event.id)
    for _, writer in subscribers:
        writer.close()
    await wait_for_waiters(server.manager, 0)
