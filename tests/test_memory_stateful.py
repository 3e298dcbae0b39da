"""The memory backend, driven through a manager, checked against a plain reference model.

A hypothesis state machine publishes on a few categories, reads from every kind of
position, steps an injected clock forwards and backwards, takes resume points, purges,
and keeps one waiting subscriber around; after every step it compares what the
manager answers with the model:

- timestamps never go backwards (`max(now, last)`, and above any resume point taken);
- a read returns exactly the buffered events after the position, of the subscribed
  categories, in publish order, without duplicates (DESIGN 3, 6.1);
- `missed` is set exactly when the position lies before the newest event a subscribed
  category evicted for size or age (DESIGN 6.2); a negative `since_time` ("everything
  buffered") never reports a gap;
- stats count the model's categories, events and waiters.

The model expires a category's events where the backend looks at that category (a
publish to it, a read of it, a purge): that is only observable when the clock steps
back, when an event that expired earlier would otherwise look alive again.

Every step runs on one private event loop whose time stands still, so no timer ever
fires (no waiter timeout, no periodic purge): each run is deterministic.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from longpoll import Batch, Event, LongpollManager, MemoryBackend, Options, Subscription
from longpoll.backends.memory import _after, _from_millisecond

T = TypeVar("T")

CATEGORIES = ("a", "b", "c")
START_MS = 1_700_000_000_000
BEFORE_EVERYTHING = (-(2**64), 0)

# Mostly several events per millisecond; sometimes steps past the TTLs used (5, 20, 100 ms).
clock_steps = st.sampled_from([0, 0, 0, 0, 1, 2, 5, 10, 20, 50, 100, 200])
category_sets = st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3, unique=True).map(
    tuple
)


class FrozenTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still: timers are scheduled but never fire."""

    def time(self) -> float:
        return 0.0


class Clock:
    """The injected wall clock (epoch ms), moved by the state machine."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def position(event: Event) -> tuple[int, int]:
    return (event.timestamp, event.sequence)


@dataclass
class ModelCategory:
    events: list[Event] = field(default_factory=list)
    evicted: Event | None = None


@dataclass
class Model:
    """What the buffers must hold: per category the last N events not expired."""

    max_size: int
    ttl_ms: int | None
    categories: dict[str, ModelCategory] = field(default_factory=dict)
    published: list[Event] = field(default_factory=list)
    last_timestamp: int | None = None
    resume_point: int | None = None  # taken since the last publish

    def expire(self, name: str, now: int) -> None:
        category = self.categories.get(name)
        if category is None or self.ttl_ms is None:
            return
        while category.events and category.events[0].timestamp <= now - self.ttl_ms:
            category.evicted = category.events.pop(0)

    def store(self, event: Event, now: int) -> None:
        self.expire(event.category, now)
        category = self.categories.setdefault(event.category, ModelCategory())
        if len(category.events) >= self.max_size:
            category.evicted = category.events.pop(0)
        category.events.append(event)
        self.published.append(event)
        self.last_timestamp = event.timestamp
        self.resume_point = None

    def purge(self, now: int) -> None:
        for name in list(self.categories):
            self.expire(name, now)
            category = self.categories[name]
            if category.events:
                continue
            marker = category.evicted
            if marker is None or (
                self.ttl_ms is not None and marker.timestamp <= now - 2 * self.ttl_ms
            ):
                del self.categories[name]

    def next_timestamp_floor(self) -> int | None:
        if self.resume_point is not None:
            return self.resume_point + 1
        return self.last_timestamp

    def buffered(self, names: tuple[str, ...]) -> list[Event]:
        events = [
            event
            for name in names
            if name in self.categories
            for event in self.categories[name].events
        ]
        return sorted(events, key=lambda event: event.sequence)

    def knows(self, event: Event, names: tuple[str, ...]) -> bool:
        """Whether a resume from `event` can find it: buffered, or its category's marker."""
        category = self.categories.get(event.category)
        if event.category not in names or category is None:
            return False
        return category.evicted is event or any(e is event for e in category.events)

    def missed(self, names: tuple[str, ...], cut: tuple[int, int]) -> bool:
        return any(
            (category := self.categories.get(name)) is not None
            and category.evicted is not None
            and position(category.evicted) > cut
            for name in names
        )


def ids(events: list[Event]) -> list[uuid.UUID]:
    return [event.id for event in events]


async def spin(turns: int = 5) -> None:
    """Let the loop run other ready callbacks a few times (it never waits: time is frozen)."""
    for _ in range(turns):
        await asyncio.sleep(0)


class MemoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=FrozenTimeLoop)
        self.clock = Clock(START_MS)
        self.backend = MemoryBackend(clock=self.clock)
        self._manager: LongpollManager | None = None
        self._model: Model | None = None
        self.resume_points: list[int] = []
        self.waiter: asyncio.Task[Batch] | None = None
        self.waiter_categories: tuple[str, ...] = ()

    @property
    def manager(self) -> LongpollManager:
        assert self._manager is not None
        return self._manager

    @property
    def model(self) -> Model:
        assert self._model is not None
        return self._model

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    @initialize(
        max_size=st.integers(min_value=1, max_value=4) | st.just(12),
        ttl_ms=st.none() | st.sampled_from([5, 20, 100]),
    )
    def start(self, max_size: int, ttl_ms: int | None) -> None:
        options = Options(
            max_event_buffer_size=max_size,
            event_ttl_seconds=None if ttl_ms is None else ttl_ms / 1000,
        )
        self._model = Model(max_size=max_size, ttl_ms=ttl_ms)
        self._manager = LongpollManager(options, backend=self.backend)
        self.run(self.manager.start())

    def teardown(self) -> None:
        try:
            if self.waiter is not None:
                self.waiter.cancel()
            if self._manager is not None:
                self.run(self._manager.aclose())
        finally:
            self.runner.close()

    # ------------------------------------------------------------------ steps

    @rule(
        steps=st.lists(st.tuples(st.sampled_from(CATEGORIES), clock_steps), min_size=1, max_size=4)
    )
    def publish(self, steps: list[tuple[str, int]]) -> None:
        """Publish a few events, the clock moving on (or not) before each."""
        for category, ms in steps:
            self.clock.now += ms
            self.publish_one(category)

    def publish_one(self, category: str) -> None:
        now = self.clock.now
        floor = self.model.next_timestamp_floor()
        previous = self.model.published[-1] if self.model.published else None
        data = {"n": len(self.model.published)}
        event = self.run(self.manager.publish(category, data))

        expected = now if floor is None else max(now, floor)
        assert event.timestamp == expected, (event.timestamp, now, floor)
        if previous is not None:
            assert event.timestamp >= previous.timestamp
            assert event.sequence > previous.sequence
        if self.model.resume_point is not None:
            assert event.timestamp > self.model.resume_point
        assert (event.category, event.data) == (category, data)
        self.model.store(event, now)

        if self.waiter is not None:
            self.run(spin())
            if category in self.waiter_categories:
                assert self.waiter.done(), "a waiting subscriber was not woken"
                batch = self.waiter.result()
                assert ids(batch.events) == [event.id]
                assert batch.timestamp == event.timestamp
                assert not batch.missed and not batch.closing
                self.waiter = None
            else:
                assert not self.waiter.done(), "woken by an event of another category"

    @rule(ms=st.integers(min_value=0, max_value=250))
    def advance_clock(self, ms: int) -> None:
        self.clock.now += ms

    @rule(ms=st.integers(min_value=1, max_value=120))
    def rewind_clock(self, ms: int) -> None:
        self.clock.now -= ms

    @rule()
    def purge(self) -> None:
        self.backend.purge()
        self.model.purge(self.clock.now)

    @rule()
    def take_resume_point(self) -> None:
        """The point a timeout answer hands out (the manager's timeout path is tested
        in test_manager.py; a wait cannot time out on this loop)."""
        now = self.clock.now
        point = self.run(self.backend.resume_point())
        # Never below the clock nor below any timestamp handed out before.
        last = self.model.last_timestamp
        assert point == (now if last is None else max(now, last))
        self.model.resume_point = point
        self.model.last_timestamp = point
        self.resume_points.append(point)

    @rule(categories=category_sets, data=st.data())
    def read(self, categories: tuple[str, ...], data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["absent", "negative", "since", "unknown_id", "event"]))
        self.check_read(categories, kind, data)

    @precondition(lambda self: self._model is not None and len(self.model.published) > 0)
    @rule(data=st.data())
    def resume_from_event(self, data: st.DataObject) -> None:
        """What a client does: resume from an event it got (and mostly from a recent one)."""
        published = self.model.published
        recent = published[-1].category
        others = [name for name in CATEGORIES if name != recent]
        extra = data.draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
        categories = tuple(data.draw(st.permutations([recent, *extra]), label="categories"))
        self.check_read(categories, "event", data)

    def check_read(self, categories: tuple[str, ...], kind: str, data: st.DataObject) -> None:
        model = self.model
        now = self.clock.now
        if kind == "absent":
            result = self.run(self.backend.read(Subscription(categories, 1)))
            assert result.events == [] and not result.missed
            return

        for name in categories:  # the backend expires what it reads
            model.expire(name, now)

        since: int
        last_id: uuid.UUID | None = None
        candidates = [e for e in model.published if e.category in categories]
        if kind == "event" and not candidates:
            kind = "since"
        if kind == "negative":
            since = data.draw(st.integers(min_value=-(2**63), max_value=-1), label="since")
            cut = BEFORE_EVERYTHING
        elif kind == "event":
            event = data.draw(st.sampled_from(candidates), label="last event seen")
            since, last_id = event.timestamp, event.id
            cut = position(event) if model.knows(event, categories) else (since, -1)
        else:
            times = sorted(
                {START_MS - 10, now}
                | {e.timestamp for e in model.published}
                | set(self.resume_points)
            )
            since = data.draw(st.sampled_from(times), label="since") + data.draw(
                st.integers(-1, 1), label="offset"
            )
            if kind == "unknown_id":
                last_id = data.draw(st.uuids(), label="last_id")
                cut = (since, -1)
            else:
                cut = (since, 2**64)

        expected = [e for e in model.buffered(categories) if position(e) > cut]
        expected_missed = since >= 0 and model.missed(categories, cut)
        subscription = Subscription(categories, 1, since_time=since, last_id=last_id)

        via_manager = bool(expected) and data.draw(st.booleans(), label="via manager")
        if via_manager:
            # There are events to return, so this answers without waiting.
            async def through_manager() -> asyncio.Task[Batch]:
                task = asyncio.create_task(self.manager.wait_for_events(subscription))
                await spin()
                return task

            task = self.run(through_manager())
            assert task.done(), "wait_for_events waited although events were buffered"
            batch = task.result()
            got, missed = batch.events, batch.missed
            assert batch.timestamp == got[-1].timestamp
            assert not batch.closing
        else:
            result = self.run(self.backend.read(subscription))
            got, missed = result.events, result.missed

        assert len(set(ids(got))) == len(got), "duplicate events"
        assert ids(got) == ids(expected), (kind, since, last_id, cut)
        assert missed == expected_missed, (kind, since, cut)

    @precondition(lambda self: self.waiter is None)
    @rule(categories=category_sets)
    def start_waiter(self, categories: tuple[str, ...]) -> None:
        async def start() -> asyncio.Task[Batch]:
            task = asyncio.create_task(self.manager.wait_for_events(Subscription(categories, 1)))
            await spin()
            return task

        self.waiter = self.run(start())
        self.waiter_categories = categories
        assert not self.waiter.done()

    @precondition(lambda self: self.waiter is not None)
    @rule()
    def disconnect_waiter(self) -> None:
        assert self.waiter is not None
        self.waiter.cancel()
        self.run(spin())
        assert self.waiter.cancelled()
        self.waiter = None

    # ------------------------------------------------------------- invariants

    @invariant()
    def stats_match_the_model(self) -> None:
        if self._manager is None:
            return
        stats = self.run(self.manager.stats())
        model = self.model
        assert stats.categories == len(model.categories)
        assert stats.buffered_events == sum(len(c.events) for c in model.categories.values())
        assert stats.waiting_subscribers == (0 if self.waiter is None else 1)


MemoryMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryBackendMatchesTheModel = MemoryMachine.TestCase


@given(
    timestamps=st.lists(st.integers(0, 6), max_size=20).map(sorted),
    cut=st.tuples(st.integers(-1, 7), st.integers(-1, 22)),
)
def test_reads_from_the_end_agree_with_a_scan(timestamps: list[int], cut: tuple[int, int]) -> None:
    events = collections.deque(
        Event.create(timestamp=t, category="c", data=n, data_json=b"0", sequence=n)
        for n, t in enumerate(timestamps)
    )
    assert _after(events, cut) == [e for e in events if (e.timestamp, e.sequence) > cut]
    since = cut[0]
    assert list(_from_millisecond(events, since)) == [e for e in events if e.timestamp >= since]
