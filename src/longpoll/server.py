"""Running a `LongpollApp` on uvicorn, as `longpoll serve` does."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from longpoll._disconnect import NOTICE_EXTENSION, DisconnectNotice
from longpoll.asgi import LongpollApp

logger = logging.getLogger("longpoll")


class _CoalescingTransport:
    """Joins the writes of one loop iteration into one, such as a response's head and body.

    uvicorn writes the head and the body of a response separately: two system calls
    and often two TCP segments where one does.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class NotifyingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, tuned for long polling.

    It tells waiting requests when their client leaves (otherwise each waiting
    request needs a task reading `receive()` just to notice), and sends each
    response in one write.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, _CoalescingTransport(transport, self.loop))

    def on_headers_complete(self) -> None:
        scope = cast("dict[str, Any]", self.scope)
        scope.setdefault("extensions", {})[NOTICE_EXTENSION] = DisconnectNotice()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None:
            scope = cast("dict[str, Any]", cycle.scope)
            notice = scope.get("extensions", {}).get(NOTICE_EXTENSION)
            if isinstance(notice, DisconnectNotice):
                notice.fire()


class _Server(uvicorn.Server):
    """uvicorn's server, answering waiting subscribers as soon as a stop is asked for."""

    def __init__(self, config: uvicorn.Config, app: LongpollApp) -> None:
        super().__init__(config)
        self._app = app

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
            logger.info(
                "longpoll listening on http://%s:%d (subscribe %s, publish %s)",
                shown_host,
                port,
                self._app.subscribe_path,
                self._app.publish_path or "off",
            )

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self._app.manager.begin_shutdown()


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


async def serve(app: LongpollApp, sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve `app` on the listening socket `sock` until SIGINT or SIGTERM."""
    config = uvicorn.Config(
        app,
        http=NotifyingHttpToolsProtocol,
        loop="none",
        lifespan="on",
        access_log=False,
        ws="none",
        log_config=None,
        log_level=log_level,
        timeout_keep_alive=120,
        backlog=4096,
    )
    server = _Server(config, app)
    # Long-lived waiters make the cyclic collector's full passes slow; move what
    # start-up allocated out of its reach and make it run less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    await server.serve(sockets=[sock])
