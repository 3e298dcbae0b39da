"""What every example shares: its command line, its page, and serving it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from longpoll import BrowserClientHandler, LongpollManager, PublishHandler, SubscribeHandler
from longpoll.server import bind_socket

HOST = "127.0.0.1"


def parser(description: str, default_port: int) -> argparse.ArgumentParser:
    """The example's command line: `--port` (0 picks a free one)."""
    arguments = argparse.ArgumentParser(description=description)
    arguments.add_argument(
        "--port", type=int, default=default_port, help=f"port on {HOST} (default {default_port})"
    )
    return arguments


def page(path: Path) -> Callable[[Request], Any]:
    """A Starlette endpoint answering with the HTML file at `path` (read once, now)."""
    html = path.read_text(encoding="utf-8")

    async def endpoint(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    return endpoint


def page_app(path: Path, manager: LongpollManager) -> Starlette:
    """The HTML page at `path` served at `/`, the long-polling endpoints and the
    browser client; the app's lifespan runs `manager`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager:
            yield

    return Starlette(
        routes=[
            Route("/", page(path)),
            Route("/events", SubscribeHandler(manager)),
            Route("/publish", PublishHandler(manager)),
            Route("/longpoll.js", BrowserClientHandler()),
        ],
        lifespan=lifespan,
    )


class _Server(uvicorn.Server):
    """uvicorn, answering the example's waiting subscribers as soon as a stop is asked
    for, and exiting with status 0 after a graceful stop."""

    def __init__(self, config: uvicorn.Config, manager: LongpollManager) -> None:
        super().__init__(config)
        self._manager = manager

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        stops = (signal.SIGINT, signal.SIGTERM)
        for stop in stops:
            loop.add_signal_handler(stop, self._stop)
        try:
            yield
        finally:
            for stop in stops:
                loop.remove_signal_handler(stop)

    def _stop(self) -> None:
        self.force_exit = self.should_exit  # a second signal does not wait
        self.should_exit = True
        self._manager.begin_shutdown()


def serve(
    build: Callable[[str], Any],
    manager: LongpollManager,
    port: int,
    *,
    title: str,
    argv_note: Sequence[str] = (),
) -> None:
    """Bind `port`, build the ASGI app with the server's base URL, print it, serve it.

    The socket is bound before the URL is printed, so the URL works at once
    (connections made before the server is ready wait in the listen queue).
    """
    sock = bind_socket(HOST, port)
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    app = build(url)
    print(f"{title}: open {url}/ in your browser", flush=True)
    for line in argv_note:
        print(line.format(url=url), flush=True)
    try:
        config = uvicorn.Config(app, loop="none", log_level="warning", timeout_keep_alive=60)
        uvloop.run(_Server(config, manager).serve(sockets=[sock]))
    finally:
        sock.close()
