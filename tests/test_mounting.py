"""The handlers inside other ASGI apps, and the README's snippets run as written."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from longpoll import LongpollApp, LongpollManager, ManagerClosed, SubscribeHandler
from tests.servers import http_client, serve_app, wait_for_waiters

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app", "python_api", "asgi_app"])
def test_readme_shows_the_example_files_verbatim(name: str) -> None:
    source = (ROOT / "docs" / "examples" / f"{name}.py").read_text()
    assert source.strip() in (ROOT / "README.md").read_text()


async def test_starlette_app() -> None:
    module = importlib.reload(importlib.import_module("docs.examples.starlette_app"))
    async with (
        serve_app(module.app, module.manager) as server,
        http_client(server.url) as client,
    ):
        assert (await client.get("/")).status_code == 200
        waiting = asyncio.create_task(client.get("/events?category=c&timeout=10"))
        await wait_for_waiters(server.manager, 1)
        published = await client.post("/publish", json={"category": "c", "data": "x"})
        assert published.status_code == 200
        events = (await waiting).json()["events"]
        assert [event["id"] for event in events] == [published.json()["id"]]
        wrong_method = await client.get("/publish")
        assert wrong_method.status_code == 405
    with pytest.raises(ManagerClosed):
        await module.manager.publish("c", "after the app stopped")


async def test_fastapi_app() -> None:
    module = importlib.reload(importlib.import_module("docs.examples.fastapi_app"))
    async with (
        serve_app(module.app, module.manager) as server,
        http_client(server.url) as client,
    ):
        waiting = asyncio.create_task(client.get("/longpoll/events?category=order-7&timeout=10"))
        await wait_for_waiters(server.manager, 1)
        shipped = await client.post("/orders/7/ship")
        assert shipped.status_code == 200
        events = (await waiting).json()["events"]
        assert events[0]["data"] == {"status": "shipped"}
        assert events[0]["id"] == shipped.json()["event_id"]
        published = await client.post(
            "/longpoll/publish", json={"category": "order-7", "data": "by http"}
        )
        assert published.status_code == 200


class Channel:
    """An ASGI receive/send pair driven by the test."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)


def http_scope(query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/events",
        "query_string": query,
        "headers": [],
    }


async def test_asgi_disconnect_mid_poll_removes_the_waiter() -> None:
    async with LongpollManager() as manager:
        handler = SubscribeHandler(manager)
        channel = Channel()
        channel.incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        task = asyncio.create_task(
            handler(http_scope(b"category=c&timeout=60"), channel.receive, channel.send)
        )
        await wait_for_waiters(manager, 1)
        channel.incoming.put_nowait({"type": "http.disconnect"})
        await asyncio.wait_for(task, 5)
        assert channel.sent == []
        assert (await manager.stats()).waiting_subscribers == 0


async def test_asgi_app_lifespan_starts_and_stops_the_manager() -> None:
    manager = LongpollManager()
    app = LongpollApp(manager)
    channel = Channel()
    task = asyncio.create_task(app({"type": "lifespan"}, channel.receive, channel.send))
    channel.incoming.put_nowait({"type": "lifespan.startup"})
    async with asyncio.timeout(5):
        while not channel.sent:
            await asyncio.sleep(0.001)
    assert channel.sent == [{"type": "lifespan.startup.complete"}]
    assert manager.running
    channel.incoming.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 5)
    assert channel.sent[-1] == {"type": "lifespan.shutdown.complete"}
    assert not manager.running


def test_python_api_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "docs.examples.python_api"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["{'title': 'hello'}", "['from a thread']"]


def test_asgi_app_example_runs_under_uvicorn() -> None:
    command = [sys.executable, "-m", "uvicorn", "--factory", "docs.examples.asgi_app:build_app"]
    server = subprocess.Popen(
        [*command, "--port", "0", "--log-level", "info"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        url = ""
        while not url:
            line = server.stderr.readline()
            assert line, "uvicorn exited before listening"
            if "running on" in line:
                url = line.split("running on ", 1)[1].split()[0]
        with httpx.Client(base_url=url, timeout=10) as client:
            published = client.post("/publish", json={"category": "c", "data": "under uvicorn"})
            assert published.status_code == 200
            events = client.get("/events", params={"category": "c", "timeout": 1, "since_time": -1})
        assert events.json()["events"][0]["data"] == "under uvicorn"
    finally:
        server.terminate()
        server.communicate(timeout=10)
