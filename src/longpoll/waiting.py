"""Subscribers waiting for events: registration, wake-up and fan-out."""

from __future__ import annotations

import asyncio
import math
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


DEADLINE_TICK_SECONDS = 0.05


class _Deadlines:
    """Wakes waiters whose timeout has passed, rounded up to a tick.

    One loop timer serves every waiter due in the same tick: a loop timer costs
    more to arm and cancel than the rest of a waiter's bookkeeping.
    """

    def __init__(self) -> None:
        self._due: dict[int, set[Waiter]] = {}

    def add(self, waiter: Waiter, timeout_seconds: float) -> int:
        """Wake `waiter` after `timeout_seconds`; returns the tick to `discard` it from."""
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + timeout_seconds) / DEADLINE_TICK_SECONDS)
        waiters = self._due.get(tick)
        if waiters is None:
            waiters = self._due[tick] = set()
            loop.call_at(tick * DEADLINE_TICK_SECONDS, self._expire, tick)
        waiters.add(waiter)
        return tick

    def discard(self, waiter: Waiter, tick: int) -> None:
        waiters = self._due.get(tick)
        if waiters is not None:
            waiters.discard(waiter)

    def _expire(self, tick: int) -> None:
        for waiter in self._due.pop(tick, ()):
            waiter.wake()


class WaiterRegistry:
    """The waiters of one process, indexed by category."""

    def __init__(self) -> None:
        self._by_category: dict[str, set[Waiter]] = {}
        self._deadlines = _Deadlines()
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
        by_category = self._by_category
        for category in waiter.categories:
            waiters = by_category.get(category)
            if waiters is None:
                waiters = by_category[category] = set()
            waiters.add(waiter)
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
        tick = self._deadlines.add(waiter, timeout_seconds)
        if disconnected is not None:
            disconnected.add_done_callback(waiter.wake)
        try:
            await waiter.future
        finally:
            self._deadlines.discard(waiter, tick)
            if disconnected is not None:
                disconnected.remove_done_callback(waiter.wake)
            self.remove(waiter)
