"""Noticing that a waiting client has gone away.

The portable way reads the ASGI `receive` channel in a task until it reports
`http.disconnect`. `longpoll serve` avoids that task per waiting request: its
uvicorn protocol puts a `DisconnectNotice` in the scope's extensions and fires
it from `connection_lost`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from longpoll._http import Receive, Scope

NOTICE_EXTENSION = "longpoll.disconnect_notice"


class DisconnectNotice:
    """Set by the server when the connection of one request is lost."""

    __slots__ = ("_future", "fired")

    def __init__(self) -> None:
        self.fired = False
        self._future: asyncio.Future[None] | None = None

    def fire(self) -> None:
        self.fired = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def future(self) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self.fired:
                self._future.set_result(None)
        return self._future


class DisconnectWatch:
    """Tells whether the client of one request disconnected, from the first `future()` on."""

    __slots__ = ("_notice", "_receive", "_task")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        extensions = scope.get("extensions") or {}
        self._notice: DisconnectNotice | None = extensions.get(NOTICE_EXTENSION)
        self._receive = receive
        self._task: asyncio.Task[None] | None = None

    def future(self) -> asyncio.Future[Any]:
        """A future done once the client has gone away."""
        if self._notice is not None:
            return self._notice.future()
        if self._task is None:
            self._task = asyncio.create_task(_wait_for_disconnect(self._receive))
        return self._task

    @property
    def disconnected(self) -> bool:
        if self._notice is not None:
            return self._notice.fired
        return self._task is not None and self._task.done() and not self._task.cancelled()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
