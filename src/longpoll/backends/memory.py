"""The in-process backend: a bounded deque of events per category."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from longpoll.backends._shared import purge_periodically, resume_cut, ttl_ms, wall_clock_ms
from longpoll.backends.base import (
    Backend,
    BackendStats,
    CategoryStats,
    ReadResult,
    Repeated,
    Stored,
)
from longpoll.errors import StoreFull
from longpoll.event import Event
from longpoll.options import Options
from longpoll.subscription import Subscription


def _position(event: Event) -> tuple[int, int]:
    return (event.timestamp, event.sequence)


def _timestamp(event: Event) -> int:
    return event.timestamp


# A resume is usually from one of the newest events: the newest few are looked at
# one by one from the end before a binary search over the whole buffer.
_FEW = 8


def _after(events: deque[Event], cut: tuple[int, int]) -> list[Event]:
    """The events after position `cut`, oldest first."""
    if not events or _position(events[-1]) <= cut:
        return []
    count = len(events)
    for back in range(2, min(_FEW, count) + 1):
        if _position(events[-back]) <= cut:
            return [events[index] for index in range(1 - back, 0)]
    if count <= _FEW:
        return list(events)
    return list(islice(events, bisect_right(events, cut, key=_position), None))


def _from_millisecond(events: deque[Event], timestamp: int) -> Iterable[Event]:
    """The events from the first of millisecond `timestamp` (or later) on, oldest first."""
    count = len(events)
    for back in range(1, min(_FEW, count) + 1):
        if events[-back].timestamp < timestamp:
            return [events[index] for index in range(1 - back, 0)]
    if count <= _FEW:
        return events
    return islice(events, bisect_left(events, timestamp, key=_timestamp), None)


class _Category:
    __slots__ = ("events", "evicted")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        # The newest event dropped for size or age: a resume position before it missed events.
        self.evicted: Event | None = None


def _newest_position(item: tuple[str, _Category]) -> tuple[int, int]:
    """The position of a category's newest event, buffered or dropped."""
    category = item[1]
    newest = category.events[-1] if category.events else category.evicted
    return _position(newest) if newest is not None else (-(2**63), 0)


class MemoryBackend(Backend):
    """Keeps events in this process's memory; the default backend.

    `clock` returns epoch milliseconds; tests pass their own to step time, even
    backwards (timestamps never go backwards regardless).
    """

    drops_counted = True

    def __init__(self, clock: Callable[[], int] = wall_clock_ms) -> None:
        super().__init__()
        self._clock = clock
        self._categories: dict[str, _Category] = {}
        self._last_timestamp = -(2**63)
        # Set once a resume point was handed out at _last_timestamp: the next event
        # must then get a larger timestamp.
        self._resume_point_taken = False
        self._sequence = 0
        # The position of the newest event stored: a read goes through it.
        self._newest = (-(2**63), 0)
        self._max_size = 250
        self._ttl_ms: int | None = None
        self._notify: Callable[[Event], None] = lambda event: None
        self._purge_task: asyncio.Task[None] | None = None
        # The buffered events, and the bytes of their JSON.
        self._buffered = 0
        self._bytes = 0
        self._max_bytes: int | None = None
        self._max_categories: int | None = None
        # With a byte bound: every event buffered, oldest first, across categories;
        # events that left otherwise stay until they reach the front (or a rebuild).
        self._oldest_first: deque[Event] = deque()
        # The buffered events whose id a publisher chose (or an add-on loaded), by
        # (category, id): publishing such an id again stores nothing.
        self._by_id: dict[tuple[str, bytes], Event] = {}
        self._purged_for_room = -math.inf  # when a full store last purged (monotonic)

    async def start(self, options: Options, notify: Callable[[Event], None]) -> None:
        self._max_size = options.max_event_buffer_size
        self._max_bytes = options.max_buffered_bytes
        self._max_categories = options.max_stored_categories
        ttl = options.event_ttl_seconds
        self._ttl_ms = ttl_ms(ttl)
        self._notify = notify
        if ttl is not None:
            self._purge_task = asyncio.create_task(purge_periodically(ttl, self.purge))

    async def close(self) -> None:
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
            self._purge_task = None

    async def append(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None = None
    ) -> Stored:
        return self.append_nowait(category, data, data_json, event_id)

    def append_nowait(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None = None
    ) -> Stored:
        if event_id is not None:
            key = (category, str(event_id).encode("ascii"))
            stored = self._by_id.get(key)
            if stored is not None:
                return Repeated(stored)
        if self._max_categories is not None and category not in self._categories:
            self._make_room_for_a_category()
        now = self._clock()
        timestamp = max(now, self._last_timestamp + self._resume_point_taken)
        self._last_timestamp = timestamp
        self._resume_point_taken = False
        self._sequence += 1
        event = Event.create(
            timestamp=timestamp,
            category=category,
            data=data,
            data_json=data_json,
            sequence=self._sequence,
            event_id=event_id,
        )
        self._store(event, now)
        if event_id is not None:
            self._by_id[key] = event
        self._newest = event.position
        self._notify(event)
        return event

    async def load(self, event: Event) -> None:
        if event.timestamp < self._last_timestamp:
            raise ValueError(
                f"event {event.id} of category {event.category!r} (timestamp "
                f"{event.timestamp}) is older than the event loaded before it (timestamp "
                f"{self._last_timestamp}): events must be loaded oldest first"
            )
        # Even an expired event moves the clock on, so that new events never get an
        # older timestamp than one already stored by an add-on.
        self._last_timestamp = event.timestamp
        now = self._clock()
        if self._is_expired(event, now):
            return
        self._sequence += 1
        stored = event.with_sequence(self._sequence)
        self._store(stored, now)
        self._by_id[(stored.category, stored.id_ascii)] = stored
        self._newest = stored.position

    def _store(self, event: Event, now: int) -> None:
        category = self._categories.get(event.category)
        if category is None:
            category = self._categories[event.category] = _Category()
        elif self._ttl_ms is not None:
            self._expire(category, now)
        if len(category.events) >= self._max_size:
            category.evicted = dropped = category.events.popleft()
            self._left(dropped)
            self.counts.dropped_for_size += 1
        category.events.append(event)
        self._buffered += 1
        self._bytes += len(event.json)
        if self._max_bytes is not None:
            self._oldest_first.append(event)
            if self._bytes > self._max_bytes:
                self._drop_oldest()

    async def read(self, subscription: Subscription) -> ReadResult:
        return self.read_nowait(subscription)

    def read_nowait(self, subscription: Subscription) -> ReadResult:
        since = subscription.since_time
        if since is None:
            return ReadResult([], through=self._newest)
        now = self._clock()
        categories = []
        for name in dict.fromkeys(subscription.categories):
            category = self._categories.get(name)
            if category is not None:
                self._expire(category, now)
                categories.append(category)
        cut = self._cut(categories, since, subscription)
        # A negative since_time asks for whatever is buffered: no gap to report.
        missed = since >= 0 and any(
            c.evicted is not None and _position(c.evicted) > cut for c in categories
        )
        events: list[Event] = []
        for category in categories:
            events += _after(category.events, cut)
        if len(categories) > 1:
            events.sort(key=_position)
        return ReadResult(events, missed, self._newest)

    @staticmethod
    def _cut(
        categories: list[_Category], since: int, subscription: Subscription
    ) -> tuple[int, int]:
        """The position after which events are returned."""

        def known() -> Iterator[tuple[int, int, uuid.UUID]]:
            for category in categories:
                for event in _from_millisecond(category.events, since):
                    if event.timestamp != since:
                        break
                    yield (event.timestamp, event.sequence, event.id)
                evicted = category.evicted
                if evicted is not None:
                    yield (evicted.timestamp, evicted.sequence, evicted.id)

        return resume_cut(since, subscription.last_id, known())

    async def remove(self, events: Sequence[Event]) -> None:
        self.remove_nowait(events)

    def remove_nowait(self, events: Sequence[Event]) -> bool:
        now = self._clock()
        for event in events:
            category = self._categories.get(event.category)
            if category is None:
                continue
            for index, stored in enumerate(category.events):
                if stored is event:
                    del category.events[index]
                    self._left(event)
                    break
            self._forget_if_empty(event.category, category, now)
        return True

    async def resume_point(self) -> int:
        return self.resume_point_nowait()

    def resume_point_nowait(self) -> int:
        self._last_timestamp = max(self._clock(), self._last_timestamp)
        self._resume_point_taken = True
        return self._last_timestamp

    async def stats(self) -> BackendStats:
        return BackendStats(
            categories=len(self._categories),
            buffered_events=self._buffered,
            buffered_bytes=self._bytes,
        )

    async def category_stats(self, limit: int) -> list[CategoryStats]:
        categories: Iterable[tuple[str, _Category]] = self._categories.items()
        if len(self._categories) > limit:
            categories = heapq.nlargest(limit, categories, key=_newest_position)
        return [CategoryStats(name, len(category.events)) for name, category in categories]

    def _left(self, event: Event) -> None:
        """Account for `event` leaving the buffers."""
        self._buffered -= 1
        self._bytes -= len(event.json)
        if self._by_id:
            key = (event.category, event.id_ascii)
            if self._by_id.get(key) is event:
                del self._by_id[key]

    def _drop_oldest(self) -> None:
        """Drop the oldest events, whatever their category, until the bytes fit."""
        assert self._max_bytes is not None
        oldest_first = self._oldest_first
        while self._bytes > self._max_bytes and oldest_first:
            event = oldest_first.popleft()
            category = self._categories.get(event.category)
            if category is None or not category.events or category.events[0] is not event:
                continue  # it left already (for size, age, or after its first retrieval)
            category.evicted = category.events.popleft()
            self._left(event)
            self.counts.dropped_for_size += 1
        # Events that left otherwise linger here: rebuild once they are most of it.
        if len(oldest_first) > 2 * self._buffered + 1024:
            everything = [e for category in self._categories.values() for e in category.events]
            everything.sort(key=_position)
            self._oldest_first = deque(everything)

    def _make_room_for_a_category(self) -> None:
        """Raise `StoreFull` unless a new category fits (purging empty ones, at most
        once a second: that walks every category)."""
        assert self._max_categories is not None
        if len(self._categories) < self._max_categories:
            return
        now = time.monotonic()
        if now - self._purged_for_room >= 1.0:
            self._purged_for_room = now
            self.purge()
            if len(self._categories) < self._max_categories:
                return
        raise StoreFull(
            f"the server keeps at most {self._max_categories} categories: try again later"
        )

    def _is_expired(self, event: Event, now: int) -> bool:
        return self._ttl_ms is not None and event.timestamp <= now - self._ttl_ms

    def _expire(self, category: _Category, now: int) -> None:
        events = category.events
        while events and self._is_expired(events[0], now):
            category.evicted = dropped = events.popleft()
            self._left(dropped)
            self.counts.expired += 1

    def _forget_if_empty(self, name: str, category: _Category, now: int) -> None:
        """Drop an empty category once its gap marker no longer matters."""
        if category.events:
            return
        evicted = category.evicted
        # The marker is kept for a second TTL so that late resumers still learn of the gap.
        if evicted is None or (
            self._ttl_ms is not None and evicted.timestamp <= now - 2 * self._ttl_ms
        ):
            del self._categories[name]

    def purge(self) -> None:
        """Remove expired events, and categories left with nothing."""
        now = self._clock()
        for name, category in list(self._categories.items()):
            self._expire(category, now)
            self._forget_if_empty(name, category, now)
