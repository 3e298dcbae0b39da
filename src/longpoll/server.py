"""longpoll's own HTTP/1.1 server, which `longpoll serve` runs.

It serves a `LongpollApp`'s endpoints with one `asyncio.Protocol` per connection
(`longpoll._protocol`) on uvloop and httptools, with the limits a server on the
internet needs. To run the app under another server, use it as the ASGI app it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import resource
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from longpoll._api import check_seconds, error_response
from longpoll._protocol import HttpConnection
from longpoll.asgi import LongpollApp
from longpoll.waiting import DeadlineWheel

logger = logging.getLogger("longpoll.server")

_CONNECTION_TICK_SECONDS = 0.25
_SPARSE_LOG_SECONDS = 10.0
# Files kept free for what is not a client: the listening socket, Redis, logs, the add-on.
_SPARE_FILES = 64
_MOST_FILES = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may make the server hold, and for how long.

    Every field is checked on creation; a bad value raises `ValueError` naming it.
    """

    max_url_bytes: int = 8 * 1024
    """Longest request URL (414 above it)."""
    max_header_bytes: int = 16 * 1024
    """Largest header block (431 above it)."""
    max_headers: int = 100
    """Most header lines in one request (431 above it)."""
    head_timeout_seconds: float = 10.0
    """Time for a request head to arrive once it began, or for a new connection's first."""
    keep_alive_timeout_seconds: float = 30.0
    """An idle connection is closed after this long without a request."""
    max_connections: int = 20_000
    """Open connections; above it a new one is answered 503 with Retry-After."""
    write_high_water_bytes: int = 1024 * 1024
    """Unsent answer bytes a connection may hold before it is cut (a client not reading)."""
    max_pipelined: int = 16
    """Requests queued behind an unanswered one before the connection stops being read."""
    grace_seconds: float = 5.0
    """At shutdown, time for requests in flight to finish before connections are cut."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name.endswith("_seconds"):
                check_seconds(name, value)
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


class HttpServer:
    """Serves `app` on listening sockets with `HttpConnection`s (see `access_log`).

    `start()` starts the app's manager and listens; `shutdown()` stops
    listening, answers waiting subscribers, lets requests in flight finish
    (up to `limits.grace_seconds`), closes every connection and the manager.
    """

    def __init__(
        self, app: LongpollApp, limits: ServerLimits | None = None, *, access_log: bool = False
    ) -> None:
        self.app = app
        self.access_log = access_log
        """Log one line per answer on the `longpoll.access` logger, at INFO."""
        self.limits = limits if limits is not None else ServerLimits()
        self.head_limit = self.limits.max_url_bytes + self.limits.max_header_bytes + 1024
        self.body_limit = app.manager.options.max_publish_body_bytes
        self.closing = False
        self.connections: set[HttpConnection] = set()
        self.deadlines = DeadlineWheel[HttpConnection](
            _CONNECTION_TICK_SECONDS, HttpConnection.deadline_passed
        )
        answer = error_response(503, "too many connections: retry later")
        self.busy_answer = (
            b"HTTP/1.1 503 Service Unavailable\r\n%bcontent-length: %d\r\n"
            b"retry-after: 1\r\nconnection: close\r\n\r\n%b"
        ) % (
            b"".join(b"%b: %b\r\n" % header for header in answer.headers),
            len(answer.body),
            answer.body,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self._emptied: asyncio.Event | None = None
        self._malformed = _SparseLog(logging.INFO)
        self._refused = _SparseLog(logging.WARNING)
        self.clock: Callable[[], float] = time.monotonic  # the loop's, once started
        self.requests = app.metrics.requests

    async def start(self, sockets: list[socket.socket]) -> None:
        """Start the app's manager, then serve on the listening `sockets`."""
        loop = asyncio.get_running_loop()
        self.clock = loop.time
        await self.app.manager.start()
        self.app.metrics.open_connections = self.connections.__len__
        self.app.metrics.start()
        for sock in sockets:
            server = await loop.create_server(
                lambda: HttpConnection(self), sock=sock, backlog=4096, start_serving=True
            )
            self._servers.append(server)

    def admit(self, connection: HttpConnection) -> bool:
        """Count a new connection; False if it is over the limit (it is still counted)."""
        self.connections.add(connection)
        if self.closing:
            return False
        if len(self.connections) <= self.limits.max_connections:
            return True
        self._refused.log(
            "%d connections open, the most allowed (--max-connections, or the limit of "
            "open files): answering new ones 503",
            self.limits.max_connections,
        )
        return False

    def release(self, connection: HttpConnection) -> None:
        """Forget a closed connection."""
        self.connections.discard(connection)
        if not self.connections and self._emptied is not None:
            self._emptied.set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` for one request in a task of its own."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def log_malformed(self, peer: object, error: Exception) -> None:
        """Log a malformed request, at most one line every few seconds."""
        self._malformed.log("malformed HTTP request from %s: %s", peer, error)

    async def shutdown(self) -> None:
        """Stop gracefully (see the class); returns within about `grace_seconds`."""
        self.closing = True
        for server in self._servers:
            server.close()
        self.app.manager.begin_shutdown()
        for connection in list(self.connections):
            connection.close_if_idle()
        try:
            async with asyncio.timeout(self.limits.grace_seconds):
                while self.connections:
                    self._emptied = asyncio.Event()
                    await self._emptied.wait()
        except TimeoutError:
            logger.warning("cutting %d connections still open at shutdown", len(self.connections))
            for connection in list(self.connections):
                connection.abort()
        await self.app.metrics.stop()
        await self.app.manager.aclose(grace_seconds=self.limits.grace_seconds)
        for task in list(self._tasks):
            task.cancel()


class _SparseLog:
    """Logs one line every `_SPARSE_LOG_SECONDS` at most, saying how many it held back."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._logged = -math.inf
        self._held_back = 0

    def log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged < _SPARSE_LOG_SECONDS:
            self._held_back += 1
            return
        if self._held_back:
            message += f" ({self._held_back} more since the last such line)"
        self._logged, self._held_back = now, 0
        logger.log(self._level, message, *args)


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


@contextlib.asynccontextmanager
async def running(
    app: LongpollApp,
    sock: socket.socket,
    limits: ServerLimits | None = None,
    *,
    access_log: bool = False,
) -> AsyncIterator[HttpServer]:
    """Serve `app` on `sock` for the duration of the block, then shut down gracefully."""
    server = HttpServer(app, limits, access_log=access_log)
    await server.start([sock])
    try:
        yield server
    finally:
        await server.shutdown()


async def serve(
    app: LongpollApp,
    sock: socket.socket,
    limits: ServerLimits | None = None,
    *,
    access_log: bool = False,
) -> None:
    """Serve `app` on the listening socket `sock` until SIGINT or SIGTERM.

    A second signal cuts the grace period short. With `access_log`, each answer is
    logged on the `longpoll.access` logger.
    """
    limits = fit_to_file_limit(limits if limits is not None else ServerLimits())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running(app, sock, limits, access_log=access_log) as server:
            tune_gc()
            host, port = sock.getsockname()[:2]
            shown_host = f"[{host}]" if ":" in host else host
            publish = app.publish_path or "off"
            logger.info(
                "longpoll listening on http://%s:%d (subscribe %s, publish %s)",
                shown_host,
                port,
                app.subscribe_path,
                publish,
            )
            await stop.wait()
            for sig in signals:
                loop.add_signal_handler(sig, _cut_all, server)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def raise_file_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files to the hard limit (to `wanted`
    where there is no hard limit); return the soft limit then in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the limit of open files from %d: %s", soft, exc)
    return soft


def fit_to_file_limit(limits: ServerLimits) -> ServerLimits:
    """Raise this process's limit of open files to the most allowed, and lower
    `limits.max_connections` to what that limit can hold (with a warning).

    Past the limit the operating system refuses new connections before the server
    sees them, so that clients get no answer and nothing is logged; within it they
    get the 503 of `max_connections`.
    """
    soft = raise_file_limit(_MOST_FILES)
    room = max(1, soft - _SPARE_FILES)
    if room < limits.max_connections:
        # Worth a warning when it takes a real share away, not the few files kept spare.
        level = logging.WARNING if room < 0.9 * limits.max_connections else logging.INFO
        logger.log(
            level,
            "the limit of open files (%d) holds %d connections: --max-connections lowered "
            "from %d (raise the hard limit, e.g. LimitNOFILE= in a systemd unit)",
            soft,
            room,
            limits.max_connections,
        )
        return dataclasses.replace(limits, max_connections=room)
    logger.info("up to %d connections (limit of open files: %d)", limits.max_connections, soft)
    return limits


def _cut_all(server: HttpServer) -> None:
    for connection in list(server.connections):
        connection.abort()


def tune_gc() -> None:
    """Set up the cyclic garbage collector for a server holding many waiting requests.

    Long-lived waiters make the collector's full passes slow: what start-up
    allocated is moved out of its reach, and it runs less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
