"""Subscribers waiting for events: position-aware delivery, deadlines and fan-out.

A waiter carries the position, (timestamp, sequence), that its read of the buffer
went through. The registry hands it only events after that position: one rule for
every backend, so that a backend whose wake-ups lag behind its reads (Redis) never
sends a subscriber what it already had.

Each waiter is completed once, by the registry: with the events handed to it, at
its deadline, or at shutdown. A waiter that `stays` (a stream) is completed with
every batch instead, and stays registered at the position of its last event until
it is removed or the shutdown completes it with a closing batch. Events are
gathered until the end of the current loop iteration, so a burst goes out in one
answer, and the publisher's own answer goes out before the fan-out. Removing a
waiter (its client left) completes nothing.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from longpoll.event import Event

Position = tuple[int, int]

DEADLINE_TICK_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Batch:
    """What a subscriber gets: events, or nothing before its timeout.

    `timestamp` is the position to resume from: the last event's timestamp, or,
    when `events` is empty, a point after which every event published later gets
    a larger timestamp. `missed` says that events after the subscriber's position
    were dropped before it asked (the gap signal). `closing` says that the
    manager is shutting down.
    """

    events: list[Event]
    timestamp: int
    missed: bool = False
    closing: bool = False


class Waiter(ABC):
    """One subscriber waiting for events of one or more categories.

    Subclasses say what completing means: `complete` gets the answer, `fail` an
    error of the backend. Both are called at most once, and only one of them
    (except for a waiter that `stays`, whose `complete` gets every batch).
    """

    stays: ClassVar[bool] = False
    """True for a stream: it stays registered after each batch (see the module)."""

    __slots__ = ("categories", "events", "missed", "position", "reading", "tick")

    def __init__(self, categories: tuple[str, ...]) -> None:
        self.categories = categories
        # Events handed over but not yet answered; None until the first.
        self.events: list[Event] | None = None
        self.position: Position | None = None
        self.missed = False
        # True while its read is under way: events are held, not answered.
        self.reading = False
        self.tick = -1  # registered while >= 0

    @abstractmethod
    def complete(self, batch: Batch) -> None:
        """Answer the subscriber."""

    @abstractmethod
    def fail(self, error: Exception) -> None:
        """Answer the subscriber with an error of the backend."""


class FutureWaiter(Waiter):
    """A waiter answered through a future, for code that awaits its batch."""

    __slots__ = ("future",)

    def __init__(self, categories: tuple[str, ...], future: asyncio.Future[Batch]) -> None:
        super().__init__(categories)
        self.future = future

    def complete(self, batch: Batch) -> None:
        if not self.future.done():
            self.future.set_result(batch)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


T = TypeVar("T", bound=Hashable)


class DeadlineWheel(Generic[T]):
    """Calls `on_due(item)` once an item's deadline has passed, rounded up to a tick.

    One loop timer serves every item due in the same tick: a loop timer costs
    more to arm and cancel than the rest of an item's bookkeeping.
    """

    def __init__(self, tick_seconds: float, on_due: Callable[[T], None]) -> None:
        self._tick_seconds = tick_seconds
        self._on_due = on_due
        self._due: dict[int, dict[T, None]] = {}

    def add(self, item: T, delay_seconds: float) -> int:
        """Call `on_due(item)` after `delay_seconds`; returns the tick to `discard` it from."""
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + delay_seconds) / self._tick_seconds)
        items = self._due.get(tick)
        if items is None:
            items = self._due[tick] = {}
            loop.call_at(self.time_of(tick), self._expire, tick)
        items[item] = None
        return tick

    def time_of(self, tick: int) -> float:
        """When the items of `tick` are due, on the loop's clock."""
        return tick * self._tick_seconds

    def discard(self, item: T, tick: int) -> None:
        items = self._due.get(tick)
        if items is not None:
            items.pop(item, None)

    def _expire(self, tick: int) -> None:
        for item in self._due.pop(tick, ()):
            self._on_due(item)


class WaiterRegistry:
    """The waiters of one process, indexed by category.

    `on_expire(waiter, closing)` answers a waiter whose deadline passed (or, with
    `closing`, one the shutdown ended); it is called after the waiter is removed.
    """

    def __init__(self, on_expire: Callable[[Waiter, bool], None]) -> None:
        self._on_expire = on_expire
        self._by_category: dict[str, set[Waiter]] = {}
        self._deadlines = DeadlineWheel[Waiter](DEADLINE_TICK_SECONDS, self._expire)
        self._ready: list[Waiter] = []
        self._count = 0
        self._emptied: asyncio.Event | None = None

    @property
    def count(self) -> int:
        """How many waiters are registered."""
        return self._count

    def add(self, waiter: Waiter, timeout_seconds: float | None) -> None:
        """Register `waiter`; with a timeout it is also armed (see `arm`)."""
        by_category = self._by_category
        for category in waiter.categories:
            waiters = by_category.get(category)
            if waiters is None:
                waiters = by_category[category] = set()
            waiters.add(waiter)
        self._count += 1
        waiter.tick = 0
        if timeout_seconds is not None:
            self.arm(waiter, timeout_seconds)

    def arm(self, waiter: Waiter, timeout_seconds: float | None) -> None:
        """End the read of a registered waiter: answer it with the events held
        after its position, if any, and expire it after `timeout_seconds` (never
        with None)."""
        held = waiter.events
        if waiter.reading:
            waiter.reading = False
            position = waiter.position
            if held and position is not None:
                held = waiter.events = [event for event in held if event.position > position]
            if held:
                self._make_ready(waiter)
            elif held is not None:
                waiter.events = None  # every event held was before its position
        if timeout_seconds is not None:
            waiter.tick = self._deadlines.add(waiter, timeout_seconds)

    def remove(self, waiter: Waiter) -> bool:
        """Unregister `waiter`; False if it was not registered."""
        if waiter.tick < 0:
            return False
        self._deadlines.discard(waiter, waiter.tick)
        waiter.tick = -1
        for category in waiter.categories:
            waiters = self._by_category.get(category)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._by_category[category]
        self._count -= 1
        if self._count == 0 and self._emptied is not None:
            self._emptied.set()
        return True

    def deliver(self, event: Event) -> None:
        """Hand `event` to every waiter of its category whose position is before it."""
        waiters = self._by_category.get(event.category)
        if not waiters:
            return
        position = event.position
        for waiter in waiters:
            after = waiter.position
            if after is not None and position <= after:
                continue
            events = waiter.events
            if events is None:
                waiter.events = [event]
                if not waiter.reading:
                    self._make_ready(waiter)
            else:
                events.append(event)

    def _make_ready(self, waiter: Waiter) -> None:
        if not self._ready:
            asyncio.get_running_loop().call_soon(self._answer_ready)
        self._ready.append(waiter)

    def _answer_ready(self) -> None:
        ready, self._ready = self._ready, []
        for waiter in ready:
            if waiter.stays:
                if waiter.tick >= 0:  # not removed meanwhile
                    self._pass_on(waiter)
            elif self.remove(waiter):
                events: Any = waiter.events
                waiter.complete(Batch(events, events[-1].timestamp, waiter.missed))

    @staticmethod
    def _pass_on(waiter: Waiter) -> None:
        """Hand a stream the events held for it; it waits on after the last one."""
        events: Any = waiter.events
        waiter.events = None
        waiter.position = events[-1].position
        missed, waiter.missed = waiter.missed, False
        waiter.complete(Batch(events, events[-1].timestamp, missed))

    def _expire(self, waiter: Waiter) -> None:
        if self.remove(waiter):
            self._on_expire(waiter, False)

    def close_all(self) -> None:
        """Answer every waiter for a shutdown."""
        waiters = {waiter for group in self._by_category.values() for waiter in group}
        for waiter in waiters:
            if self.remove(waiter):
                self._on_expire(waiter, True)

    def count_by_category(self) -> dict[str, int]:
        """How many waiters wait for each category that has any."""
        return {category: len(waiters) for category, waiters in self._by_category.items()}

    async def wait_until_empty(self) -> None:
        """Return once no waiter is registered."""
        if self._count:
            self._emptied = asyncio.Event()
            await self._emptied.wait()
