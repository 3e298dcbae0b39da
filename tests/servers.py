"""Real servers on loopback ports for the tests: in process (longpoll's own server or
stock uvicorn) and `longpoll serve` as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import httpx
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from longpoll import LongpollApp, LongpollManager
from longpoll.server import HttpServer, ServerLimits, bind_socket, running


def http_client(url: str, timeout: float = 30) -> httpx.AsyncClient:
    """An HTTP client for `url` whose read timeout is above any poll in the tests.

    TCP_NODELAY: httpx writes a request's headers and body separately, and Nagle's
    algorithm would hold the body back until the server's delayed ACK (~40 ms).
    """
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    transport = httpx.AsyncHTTPTransport(socket_options=nodelay)
    return httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport)


@dataclass
class RunningServer:
    """An app served on this test's event loop; `http` is longpoll's own server, if that
    serves it."""

    url: str
    manager: LongpollManager
    http: HttpServer | None = None


async def wait_for_waiters(manager: LongpollManager, count: int) -> None:
    """Return once exactly `count` subscribers are waiting on `manager` (10 s at most)."""
    async with asyncio.timeout(10):
        while (await manager.stats()).waiting_subscribers != count:
            await asyncio.sleep(0.002)


class _TestServer(uvicorn.Server):
    """Leaves signal handling to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _uvicorn(
    app: Callable[..., Awaitable[None]],
    port: int,
    *,
    lifespan: Literal["on", "off"],
) -> AsyncIterator[tuple[uvicorn.Server, str]]:
    """Run uvicorn for `app` on `port` (0: a free one) as a task of this loop."""
    sock = bind_socket("127.0.0.1", port)
    config = uvicorn.Config(
        app,
        http=HttpToolsProtocol,
        loop="none",
        lifespan=lifespan,
        access_log=False,
        log_config=None,
        log_level="warning",
    )
    server = _TestServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def serve_app(
    app: Callable[..., Awaitable[None]],
    manager: LongpollManager | None = None,
    *,
    portable: bool = False,
    limits: ServerLimits | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve `app` on a free loopback port, with its lifespan, until the block ends.

    A `LongpollApp` is served by longpoll's own server (with `limits`), as by
    `longpoll serve`; with `portable`, or any other ASGI app, by stock uvicorn.
    `manager` is the one `app` uses (found by itself for a `LongpollApp`).
    """
    if manager is None:
        assert isinstance(app, LongpollApp)
        manager = app.manager
    if isinstance(app, LongpollApp) and not portable:
        sock = bind_socket("127.0.0.1", 0)
        try:
            async with running(app, sock, limits) as http:
                yield RunningServer(f"http://127.0.0.1:{sock.getsockname()[1]}", manager, http)
        finally:
            sock.close()
        return
    async with _uvicorn(app, 0, lifespan="on") as (_, url):
        try:
            yield RunningServer(url, manager)
        finally:
            manager.begin_shutdown()


@contextlib.asynccontextmanager
async def serve_until_crash(
    app: Callable[..., Awaitable[None]], port: int = 0
) -> AsyncIterator[str]:
    """Serve `app` on `port` (0: a free one) and yield its URL; on exit, die.

    The app's lifespan is not run, so its manager outlives the server and a new
    server can take the same port. Leaving the block acts like a killed server:
    it stops listening, then cuts every connection, waiting polls included (in
    that order, or a client's retry could get in and wait).
    """
    async with _uvicorn(app, port, lifespan="off") as (server, url):
        try:
            yield url
        finally:
            for listener in server.servers:
                listener.close()
            for connection in list(server.server_state.connections):
                connection.transport.close()


@dataclass
class ServeProcess:
    """`longpoll serve` running as a child process."""

    process: subprocess.Popen[str]
    url: str
    first_line: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str]:
        """Send `sig`, wait for the exit, return (exit code, remaining output)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return self.process.returncode, output


_LISTENING = re.compile(r"listening on (http://\S+)")


def start_serve(*flags: str, timeout: float = 15) -> ServeProcess:
    """Start `longpoll serve --port 0 FLAGS` and wait for its "listening on" line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "longpoll.cli", "serve", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = _LISTENING.search(line)
        if match:
            return ServeProcess(process, match.group(1), line)
    process.kill()
    process.communicate()
    raise AssertionError("longpoll serve did not start:\n" + "".join(lines))


@contextlib.contextmanager
def serve_process(*flags: str) -> Iterator[ServeProcess]:
    """`start_serve` as a context manager that always stops the process."""
    running = start_serve(*flags)
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL)
