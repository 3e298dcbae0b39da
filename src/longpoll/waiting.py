"""Subscribers waiting for events: registration, wake-up and fan-out."""

from __future__ import annotations

import asyncio
from typing import Any

from longpoll.event import Event


class Waiter:
    """One subscriber waiting for events of one or more categories.

    Events are handed to the waiter as they are published (in publish order) until
    its task runs again and unregisters it, so nothing published in between is lost.
    """

    __slots__ = ("categories", "closing", "events", "future")

    def __init__(self, categories: tuple[str, ...], future: asyncio.Future[None]) -> None:
        self.categories = categories
        self.future = future
        self.events: list[Event] = []
        self.closing = False

    def deliver(self, event: Event) -> None:
        self.events.append(event)
        self.wake()

    def wake(self, _: Any = None) -> None:
        """End the wait (for a timeout, a disconnect or a shutdown)."""
        if not self.future.done():
            self.future.set_result(None)


class WaiterRegistry:
    """The waiters of one process, indexed by category."""

    def __init__(self) -> None:
        self._by_category: dict[str, set[Waiter]] = {}
        self._count = 0
        self._emptied: asyncio.Event | None = None

    @property
    def count(self) -> int:
        """How many waiters are registered."""
        return self._count

    def categories(self) -> list[str]:
        """The categories that have at least one waiter."""
        return list(self._by_category)

    def add(self, waiter: Waiter) -> None:
        for category in waiter.categories:
            self._by_category.setdefault(category, set()).add(waiter)
        self._count += 1

    def remove(self, waiter: Waiter) -> None:
        for category in waiter.categories:
            waiters = self._by_category.get(category)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._by_category[category]
        self._count -= 1
        if self._count == 0 and self._emptied is not None:
            self._emptied.set()

    def deliver(self, event: Event) -> None:
        """Hand `event` to every waiter of its category and wake them."""
        # Woken waiters stay registered until their task runs, so that they also get
        # the events published in between, in order.
        waiters = self._by_category.get(event.category)
        if waiters:
            for waiter in waiters:
                waiter.deliver(event)

    def close_all(self) -> None:
        """Wake every waiter for a shutdown."""
        for waiters in self._by_category.values():
            for waiter in waiters:
                waiter.closing = True
                waiter.wake()

    async def wait_until_empty(self) -> None:
        """Return once no waiter is registered."""
        if self._count:
            self._emptied = asyncio.Event()
            await self._emptied.wait()

    async def wait(
        self,
        waiter: Waiter,
        timeout_seconds: float,
        disconnected: asyncio.Future[Any] | None = None,
    ) -> None:
        """Wait until `waiter` gets events, times out, disconnects or is closed.

        The waiter must have been added; it is removed when this returns.
        """
        timer = asyncio.get_running_loop().call_later(timeout_seconds, waiter.wake)
        if disconnected is not None:
            disconnected.add_done_callback(waiter.wake)
        try:
            await waiter.future
        finally:
            timer.cancel()
            if disconnected is not None:
                disconnected.remove_done_callback(waiter.wake)
            self.remove(waiter)
