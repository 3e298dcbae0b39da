"""Running a `LongpollApp` on uvicorn, as `longpoll serve` does."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import socket
import weakref
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from longpoll._channel import HOOKS_EXTENSION, ServerHooks
from longpoll._http import ASGIApp
from longpoll.asgi import LongpollApp
from longpoll.manager import LongpollManager

logger = logging.getLogger("longpoll")


class _UvicornHooks(ServerHooks):
    """`ServerHooks` for one request on uvicorn's httptools protocol.

    Tied to uvicorn's `RequestResponseCycle`: `respond` does in one write what the
    cycle's `send` does for a `http.response.start` and a final body message.
    """

    __slots__ = ("_cycle", "_future", "lost")

    def __init__(self) -> None:
        # Weak, because the cycle holds the scope that holds these hooks: a strong
        # reference would make each request a garbage cycle for the collector.
        self._cycle: weakref.ref[RequestResponseCycle] | None = None
        self.lost = False
        self._future: asyncio.Future[None] | None = None

    @property
    def disconnected(self) -> bool:
        return self.lost

    def disconnect_future(self) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self.lost:
                self._future.set_result(None)
        return self._future

    def connection_lost(self) -> None:
        self.lost = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def attach(self, cycle: RequestResponseCycle) -> None:
        """Tie these hooks to the request's cycle (alive while its app runs)."""
        self._cycle = weakref.ref(cycle)

    def received_body(self) -> bytes | None:
        cycle = self._cycle() if self._cycle is not None else None
        if cycle is None or cycle.more_body or cycle.waiting_for_100_continue:
            return None
        return bytes(cycle.body)

    def respond(self, status: int, head: bytes, body: bytes) -> None:
        cycle = self._cycle() if self._cycle is not None else None
        assert cycle is not None, "the request's cycle is set before its app runs"
        if cycle.disconnected:
            return
        if cycle.response_started:
            raise RuntimeError("a response was already started for this request")
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        parts = [_status_line(status)]
        for name, value in cycle.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(head)
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"content-length: %d\r\n\r\n" % len(body))
        if cycle.scope["method"] != "HEAD":
            parts.append(body)
        cycle.transport.write(b"".join(parts))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()


@functools.cache
def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %b\r\n" % (status, HTTPStatus(status).phrase.encode("ascii"))


class LongpollHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with `ServerHooks` for each request.

    Each response of the longpoll handlers goes out in one write (uvicorn writes
    the head and the body separately), and a waiting request learns of a lost
    connection without a task of its own reading `receive()`.
    """

    def on_headers_complete(self) -> None:
        hooks = _UvicornHooks()
        scope = cast("dict[str, Any]", self.scope)
        scope.setdefault("extensions", {})[HOOKS_EXTENSION] = hooks
        super().on_headers_complete()
        # The app runs in a task that starts later, so the cycle is set in time.
        hooks.attach(self.cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None:
            hooks = cast("dict[str, Any]", cycle.scope).get("extensions", {}).get(HOOKS_EXTENSION)
            if isinstance(hooks, _UvicornHooks):
                hooks.connection_lost()


class _Server(uvicorn.Server):
    """uvicorn's server, answering waiting subscribers as soon as a stop is asked for."""

    def __init__(self, config: uvicorn.Config, manager: LongpollManager, endpoints: str) -> None:
        super().__init__(config)
        self._manager = manager
        self._endpoints = endpoints

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            shown_host = f"[{host}]" if ":" in host else host
            logger.info("longpoll listening on http://%s:%d%s", shown_host, port, self._endpoints)

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self._manager.begin_shutdown()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one); raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(
    app: LongpollApp | ASGIApp,
    sock: socket.socket,
    *,
    manager: LongpollManager | None = None,
    log_level: str = "info",
) -> None:
    """Serve `app` on the listening socket `sock` until SIGINT or SIGTERM.

    `app` may be any ASGI app; `manager` is the one its handlers use (a
    `LongpollApp` brings its own). On a stop, the manager answers its waiting
    subscribers at once, so that their connections do not hold up the shutdown.
    """
    endpoints = ""
    if isinstance(app, LongpollApp):
        manager = app.manager
        publish = app.publish_path or "off"
        endpoints = f" (subscribe {app.subscribe_path}, publish {publish})"
    if manager is None:
        raise ValueError("serve() needs the manager of an app that is not a LongpollApp")
    config = uvicorn.Config(
        app,
        http=LongpollHttpProtocol,
        loop="none",
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        ws="none",
        log_config=None,
        log_level=log_level,
        timeout_keep_alive=120,
        backlog=4096,
    )
    server = _Server(config, manager, endpoints)
    tune_gc()
    await server.serve(sockets=[sock])


def tune_gc() -> None:
    """Set up the cyclic garbage collector for a server holding many waiting requests.

    Long-lived waiters make the collector's full passes slow: what start-up
    allocated is moved out of its reach, and it runs less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
