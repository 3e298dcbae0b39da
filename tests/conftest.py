from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from bench.redis_server import RedisServer
from longpoll import LongpollApp, LongpollManager, MemoryBackend, Options
from longpoll.backends import Backend
from tests.servers import RunningServer, http_client, serve_app

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_PRESENT = Path(CHROMIUM).exists()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (Playwright's own browser downloads are not used)."""
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context; uncaught errors in it fail the test."""
    context = await browser.new_context()
    tab = await context.new_page()
    uncaught: list[str] = []
    tab.on("pageerror", lambda error: uncaught.append(str(error)))
    yield tab
    await context.close()
    assert uncaught == []


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private `redis-server` on a free loopback port, shared by the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def make_backend(request: pytest.FixtureRequest) -> Callable[[], Backend]:
    """Builds the backend under test (the HTTP suite is written once for every backend).

    Each Redis backend gets keys under a fresh prefix, so tests never see each
    other's events.
    """
    if request.param == "memory":
        return MemoryBackend
    from longpoll.backends.redis import RedisBackend

    url = request.getfixturevalue("redis_server").url

    def redis_backend() -> Backend:
        return RedisBackend(url, key_prefix=f"test-{uuid.uuid4().hex}")

    return redis_backend


@pytest.fixture(params=["own-server", "asgi-uvicorn"])
def portable(request: pytest.FixtureRequest) -> bool:
    """Every HTTP test runs on longpoll's own server and on stock uvicorn (ASGI)."""
    return bool(request.param == "asgi-uvicorn")


@pytest.fixture
def make_server(make_backend: Callable[[], Backend], portable: bool) -> ServerFactory:
    """Serve a fresh manager with the given options on a free loopback port."""
    default_portable = portable

    @contextlib.asynccontextmanager
    async def factory(
        options: Options | None = None, *, portable: bool = default_portable
    ) -> AsyncIterator[RunningServer]:
        manager = LongpollManager(options or Options(), backend=make_backend())
        async with serve_app(LongpollApp(manager), portable=portable) as running:
            yield running

    return factory


@pytest.fixture
async def server(make_server: ServerFactory) -> AsyncIterator[RunningServer]:
    """A server with default options."""
    async with make_server() as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for `server`, with a read timeout above any poll in the tests."""
    async with http_client(server.url) as http:
        yield http
