"""What every example shares: its command line, its page, and serving it."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

import longpoll.server
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
        uvloop.run(longpoll.server.serve(app, sock, manager=manager, log_level="warning"))
    finally:
        sock.close()
