"""LongpollManager from Python: validation, delivery, resume, buffers, races and lifecycle.

The memory backend gets an injected clock (epoch ms) so that tests can freeze time,
publish bursts in one millisecond and step the clock, also backwards. The races of
DESIGN 3 run on an event loop whose time a test can jump forward, so that a waiter's
timeout fires at once and at a known point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

import pytest

from longpoll import (
    AddOn,
    Batch,
    Event,
    InvalidRequest,
    LongpollManager,
    ManagerClosed,
    MemoryBackend,
    Options,
    Subscription,
)
from longpoll.event import encode_data

T0 = 1_700_000_000_000  # epoch ms


class Clock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@contextlib.asynccontextmanager
async def running(
    clock: Clock | None = None, addon: AddOn | None = None, **options: Any
) -> AsyncIterator[tuple[LongpollManager, MemoryBackend]]:
    backend = MemoryBackend(clock=clock) if clock is not None else MemoryBackend()
    async with LongpollManager(Options(**options), backend=backend, addon=addon) as manager:
        yield manager, backend


def ids(events: Iterable[Event]) -> list[uuid.UUID]:
    return [event.id for event in events]


def sub(
    *categories: str, since_time: int | None = None, last_id: uuid.UUID | None = None
) -> Subscription:
    return Subscription(categories, 1, since_time=since_time, last_id=last_id)


def after(batch: Batch, *categories: str) -> Subscription:
    """The subscription a client sends next: resume from the batch's position."""
    last_id = batch.events[-1].id if batch.events else None
    return sub(*categories, since_time=batch.timestamp, last_id=last_id)


async def wait_for_waiters(manager: LongpollManager, count: int) -> None:
    for _ in range(100):
        if (await manager.stats()).waiting_subscribers == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never {count} waiting subscribers")


def _ended() -> asyncio.Future[None]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def poll_now(manager: LongpollManager, subscription: Subscription) -> Batch:
    """Poll without waiting: a wait, if one is needed, ends at once (as on a disconnect)."""
    return await manager.wait_for_events(subscription, watch_disconnect=_ended)


def publish_now(manager: LongpollManager, category: str, data: Any) -> Event:
    """Publish synchronously (the memory backend never suspends), e.g. from a loop callback."""
    coroutine = manager.publish(category, data)
    try:
        coroutine.send(None)
    except StopIteration as stop:
        event = stop.value
        assert isinstance(event, Event)
        return event
    coroutine.close()
    raise AssertionError("publish() suspended")


class JumpingLoop(asyncio.SelectorEventLoop):
    """An event loop whose time a test can jump forward, firing due timers at once."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def run_jumping(main: Callable[[JumpingLoop], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=JumpingLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, JumpingLoop)
        runner.run(asyncio.wait_for(main(loop), 30))


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "category",
    ["", "x" * 1025, "é" * 513, "\ud800", 5, None, b"bytes", ["a"]],
    ids=[
        "empty",
        "1025-bytes",
        "1026-utf8-bytes",
        "lone-surrogate",
        "int",
        "none",
        "bytes",
        "list",
    ],
)
async def test_publish_rejects_a_bad_category_and_stores_nothing(category: Any) -> None:
    async with running() as (manager, _):
        with pytest.raises(InvalidRequest, match="category"):
            await manager.publish(category, {"x": 1})
        stats = await manager.stats()
        assert (stats.categories, stats.buffered_events) == (0, 0)


async def test_publish_accepts_a_category_of_exactly_1024_bytes() -> None:
    async with running() as (manager, _):
        event = await manager.publish("é" * 512, 1)
        assert event.category == "é" * 512
        assert (await manager.stats()).buffered_events == 1


@pytest.mark.parametrize(
    "data",
    [None, {1, 2}, object(), {"nested": object()}, [1, {"k": {2}}], b"raw", 2**64, {1: "x"}],
    ids=["none", "set", "object", "nested-object", "nested-set", "bytes", "huge-int", "int-key"],
)
async def test_publish_rejects_bad_data_and_stores_nothing(data: Any) -> None:
    async with running() as (manager, _):
        with pytest.raises(InvalidRequest, match="data") as raised:
            await manager.publish("c", data)
        assert isinstance(raised.value, ValueError)
        stats = await manager.stats()
        assert (stats.categories, stats.buffered_events) == (0, 0)


async def test_publish_rejects_nan_data() -> None:
    async with running() as (manager, _):
        with pytest.raises(InvalidRequest):
            await manager.publish("c", math.nan)
        assert (await manager.stats()).buffered_events == 0


async def test_publish_when_not_running_raises_manager_closed() -> None:
    manager = LongpollManager()
    with pytest.raises(ManagerClosed):
        await manager.publish("c", 1)
    with pytest.raises(ManagerClosed):
        await manager.wait_for_events(sub("c"))
    await manager.start()
    assert (await manager.publish("c", 1)).category == "c"
    manager.begin_shutdown()
    assert not manager.running
    with pytest.raises(ManagerClosed):
        await manager.publish("c", 2)
    await manager.aclose()
    with pytest.raises(ManagerClosed):
        await manager.publish("c", 3)
    with pytest.raises(ManagerClosed):
        await manager.wait_for_events(sub("c", since_time=-1))
    assert (await manager.stats()).buffered_events == 1
    with pytest.raises(ManagerClosed):
        await manager.start()


BAD_OPTIONS: list[tuple[str, Any]] = [
    ("max_longpoll_timeout_seconds", 0),
    ("max_longpoll_timeout_seconds", -1),
    ("max_longpoll_timeout_seconds", 1.5),
    ("max_longpoll_timeout_seconds", True),
    ("max_longpoll_timeout_seconds", "110"),
    ("max_event_buffer_size", 0),
    ("max_event_buffer_size", False),
    ("max_event_buffer_size", 2.0),
    ("max_event_buffer_size", None),
    ("max_publish_body_bytes", 0),
    ("max_publish_body_bytes", "1"),
    ("max_categories_per_request", 0),
    ("max_categories_per_request", 1.0),
    ("event_ttl_seconds", 0),
    ("event_ttl_seconds", -1.0),
    ("event_ttl_seconds", True),
    ("event_ttl_seconds", "1"),
    ("event_ttl_seconds", math.nan),
    ("delete_event_after_first_retrieval", 1),
    ("delete_event_after_first_retrieval", "yes"),
    ("delete_event_after_first_retrieval", None),
]


@pytest.mark.parametrize(("name", "value"), BAD_OPTIONS)
def test_bad_option_raises_value_error_naming_it(name: str, value: Any) -> None:
    kwargs: dict[str, Any] = {name: value}
    with pytest.raises(ValueError, match=name):
        Options(**kwargs)


@pytest.mark.parametrize("value", [object(), AddOn])
def test_bad_addon_raises_value_error_naming_it(value: Any) -> None:
    with pytest.raises(ValueError, match="addon"):
        LongpollManager(addon=value)


def test_options_accept_their_smallest_values() -> None:
    options = Options(
        max_longpoll_timeout_seconds=1,
        max_event_buffer_size=1,
        event_ttl_seconds=0.001,
        max_publish_body_bytes=1,
        max_categories_per_request=1,
        delete_event_after_first_retrieval=True,
    )
    assert LongpollManager(options, addon=AddOn()).addon is not None
    assert options.event_ttl_seconds == 0.001
    assert Options(event_ttl_seconds=2).event_ttl_seconds == 2


async def test_infinite_ttl_is_rejected_up_front_or_works() -> None:
    try:
        options = Options(event_ttl_seconds=math.inf)
    except ValueError as exc:
        assert "event_ttl_seconds" in str(exc)
        return
    async with LongpollManager(options) as manager:
        await manager.publish("c", 1)
        assert (await manager.stats()).buffered_events == 1


async def test_subscription_is_validated() -> None:
    async with running(max_longpoll_timeout_seconds=5, max_categories_per_request=2) as (m, _):
        with pytest.raises(InvalidRequest, match="timeout"):
            await m.wait_for_events(Subscription(("c",), 6))
        with pytest.raises(InvalidRequest, match="category"):
            await m.wait_for_events(Subscription(("a", "b", "c"), 1))
        with pytest.raises(InvalidRequest, match="last_id"):
            await m.wait_for_events(Subscription(("c",), 1, last_id=uuid.uuid4()))
        assert (await m.stats()).waiting_subscribers == 0


# ------------------------------------------------------------------ delivery


async def test_waiter_receives_an_event_published_while_it_waits() -> None:
    async with running() as (manager, _):
        news = asyncio.create_task(manager.wait_for_events(sub("news")))
        sports = asyncio.create_task(manager.wait_for_events(sub("sports")))
        await wait_for_waiters(manager, 2)

        event = await manager.publish("news", {"headline": "hello"})
        batch = await asyncio.wait_for(news, 0.5)

        assert ids(batch.events) == [event.id]
        assert batch.events[0].data == {"headline": "hello"}
        assert batch.timestamp == event.timestamp
        assert not batch.missed and not batch.closing
        await asyncio.sleep(0)
        assert not sports.done(), "woken by an event of another category"
        assert (await manager.stats()).waiting_subscribers == 1

        sports.cancel()  # a client that goes away leaves nothing behind
        with contextlib.suppress(asyncio.CancelledError):
            await sports
        assert (await manager.stats()).waiting_subscribers == 0


async def test_disconnect_ends_the_wait_and_removes_the_waiter() -> None:
    async with running() as (manager, _):
        gone = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(manager.wait_for_events(sub("c"), watch_disconnect=lambda: gone))
        await wait_for_waiters(manager, 1)
        gone.set_result(None)
        batch = await asyncio.wait_for(task, 0.5)
        assert batch.events == [] and not batch.closing
        assert (await manager.stats()).waiting_subscribers == 0


async def test_several_categories_merge_in_publish_order() -> None:
    clock = Clock()
    async with running(clock) as (manager, _):
        published = []
        for index, category in enumerate("abcbacab"):
            published.append(await manager.publish(category, index))
            clock.now += index % 2  # pairs of events share a millisecond

        batch = await manager.wait_for_events(sub("c", "a", since_time=-1))
        assert ids(batch.events) == ids(e for e in published if e.category in "ac")

        middle = published[3]  # a "b"
        batch = await manager.wait_for_events(
            sub("a", "b", since_time=middle.timestamp, last_id=middle.id)
        )
        assert ids(batch.events) == ids(e for e in published[4:] if e.category in "ab")


@pytest.mark.parametrize(
    "burst",
    [
        "bcab",
        "abab",
        "bb",
        "bba",
        "abba",
        "aacb",
    ],
)
async def test_waiter_on_several_categories_loses_nothing_of_a_burst(burst: str) -> None:
    """Events published before the woken waiter runs: in its batch, or after its position."""
    async with running(Clock()) as (manager, _):
        task = asyncio.create_task(manager.wait_for_events(sub("a", "b")))
        await wait_for_waiters(manager, 1)
        published = [publish_now(manager, category, index) for index, category in enumerate(burst)]
        batch = await asyncio.wait_for(task, 0.5)
        later = await poll_now(manager, after(batch, "a", "b"))

        assert batch.events, "the waiter was not woken"
        wanted = [event for event in published if event.category in ("a", "b")]
        assert ids(batch.events + later.events) == ids(wanted)


# ------------------------------------------------------------------- resume


async def test_resume_through_a_burst_in_one_millisecond() -> None:
    clock = Clock()
    async with running(clock) as (manager, _):
        before = await manager.publish("c", "before")
        clock.now += 1
        burst = [await manager.publish("c", index) for index in range(6)]
        clock.now += 1
        assert {event.timestamp for event in burst} == {T0 + 1}

        for index, event in enumerate(burst):
            batch = await poll_now(manager, sub("c", since_time=event.timestamp, last_id=event.id))
            assert ids(batch.events) == ids(burst[index + 1 :])

        # A client that resumes from the last event it got sees each event once, in order
        # (here it takes at most two per response, as if a page had ended there).
        seen: list[Event] = []
        position = sub("c", since_time=before.timestamp, last_id=before.id)
        while (batch := await poll_now(manager, position)).events:
            seen.extend(batch.events[:2])
            position = sub("c", since_time=seen[-1].timestamp, last_id=seen[-1].id)
        assert ids(seen) == ids(burst)


async def test_unknown_last_id_returns_every_event_of_that_millisecond() -> None:
    clock = Clock()
    async with running(clock) as (manager, _):
        first = await manager.publish("c", 0)
        clock.now += 1
        same_ms = [await manager.publish("c", index) for index in range(3)]
        clock.now += 1
        last = await manager.publish("c", 9)

        for unknown in (uuid.uuid4(), first.id, last.id):  # not at that millisecond
            batch = await manager.wait_for_events(sub("c", since_time=T0 + 1, last_id=unknown))
            assert ids(batch.events) == ids([*same_ms, last])
            assert not batch.missed

        batch = await manager.wait_for_events(sub("c", since_time=T0 + 1))
        assert ids(batch.events) == [last.id], "since_time alone: the whole millisecond was seen"


# ---------------------------------------------------------- bounded buffers


async def test_buffer_overflow_drops_the_oldest_and_flags_the_gap() -> None:
    clock = Clock()
    async with running(clock, max_event_buffer_size=3) as (manager, backend):
        events = []
        for index in range(5):
            events.append(await manager.publish("c", index))
            clock.now += 1
        e0, e1, e2, e3, e4 = events
        assert (await manager.stats()).buffered_events == 3

        everything = await manager.wait_for_events(sub("c", since_time=-1))
        assert ids(everything.events) == ids([e2, e3, e4]) and not everything.missed

        async def resume(event: Event) -> Batch:
            return await manager.wait_for_events(
                sub("c", since_time=event.timestamp, last_id=event.id)
            )

        # Position e1: the newest event dropped. Nothing after it was lost.
        batch = await resume(e1)
        assert ids(batch.events) == ids([e2, e3, e4]) and not batch.missed
        # Position e0: e1 fell out after it.
        batch = await resume(e0)
        assert ids(batch.events) == ids([e2, e3, e4]) and batch.missed
        batch = await resume(e2)
        assert ids(batch.events) == ids([e3, e4]) and not batch.missed

        assert not (await manager.wait_for_events(sub("c", since_time=e1.timestamp))).missed
        assert (await manager.wait_for_events(sub("c", since_time=e0.timestamp))).missed
        assert (await manager.wait_for_events(sub("c", since_time=0))).missed
        # Another category's gap is not this category's gap.
        other = await manager.publish("d", "x")
        batch = await manager.wait_for_events(sub("d", since_time=0))
        assert ids(batch.events) == [other.id] and not batch.missed
        # No since_time: never a gap.
        assert not (await backend.read(sub("c"))).missed


async def test_overflow_within_one_millisecond_flags_the_gap_by_id() -> None:
    async with running(Clock(), max_event_buffer_size=2) as (manager, _):
        events = [await manager.publish("c", index) for index in range(4)]
        e0, e1, e2, e3 = events

        batch = await manager.wait_for_events(sub("c", since_time=T0, last_id=e1.id))
        assert ids(batch.events) == ids([e2, e3]) and not batch.missed
        batch = await manager.wait_for_events(sub("c", since_time=T0, last_id=e0.id))
        assert ids(batch.events) == ids([e2, e3]) and batch.missed


async def test_ttl_expiry_and_purge_of_emptied_categories() -> None:
    clock = Clock()
    async with running(clock, event_ttl_seconds=1) as (manager, backend):
        a0 = await manager.publish("a", 0)
        clock.now += 500
        a1 = await manager.publish("a", 1)
        b0 = await manager.publish("b", 0)

        clock.now = T0 + 999
        assert ids((await manager.wait_for_events(sub("a", since_time=-1))).events) == ids([a0, a1])

        clock.now = T0 + 1000  # a0 is one TTL old
        batch = await manager.wait_for_events(sub("a", since_time=-1))
        assert ids(batch.events) == [a1.id]
        batch = await manager.wait_for_events(sub("a", since_time=a0.timestamp, last_id=a0.id))
        assert ids(batch.events) == [a1.id] and not batch.missed
        batch = await manager.wait_for_events(sub("a", "b", since_time=T0 - 1))
        assert ids(batch.events) == ids([a1, b0]) and batch.missed

        clock.now = T0 + 1500  # everything expired
        backend.purge()
        stats = await manager.stats()
        assert (stats.categories, stats.buffered_events) == (2, 0)
        # Within 2 x TTL the gap is still reported to a late resumer.
        result = await backend.read(sub("a", since_time=a0.timestamp, last_id=a0.id))
        assert result.events == [] and result.missed

        clock.now = T0 + 2499
        backend.purge()
        assert (await manager.stats()).categories == 2
        clock.now = T0 + 2500  # two TTLs after the newest evicted event
        backend.purge()
        stats = await manager.stats()
        assert (stats.categories, stats.buffered_events) == (0, 0)

        fresh = await manager.publish("a", 2)
        batch = await manager.wait_for_events(sub("a", since_time=-1))
        assert ids(batch.events) == [fresh.id]


# --------------------------------------------------- delete after first retrieval


async def test_delete_after_first_retrieval_reaches_every_waiter_then_is_gone() -> None:
    async with running(Clock(), delete_event_after_first_retrieval=True) as (manager, _):
        waiters = [asyncio.create_task(manager.wait_for_events(sub("c"))) for _ in range(3)]
        await wait_for_waiters(manager, 3)
        event = await manager.publish("c", "once")
        batches = await asyncio.wait_for(asyncio.gather(*waiters), 0.5)
        assert [ids(batch.events) for batch in batches] == [[event.id]] * 3

        # Handed out but not acknowledged (never written to a response): still buffered.
        assert (await manager.stats()).buffered_events == 1
        for batch in batches:
            await manager.acknowledge(batch)
        stats = await manager.stats()
        assert (stats.categories, stats.buffered_events) == (0, 0)
        assert (await poll_now(manager, sub("c", since_time=-1))).events == []


async def test_delete_after_first_retrieval_of_buffered_events() -> None:
    async with running(Clock(), delete_event_after_first_retrieval=True) as (manager, _):
        first = await manager.publish("c", 1)
        second = await manager.publish("c", 2)

        unacknowledged = await manager.wait_for_events(sub("c", since_time=-1))
        assert ids(unacknowledged.events) == ids([first, second])
        again = await manager.wait_for_events(sub("c", since_time=-1))
        assert ids(again.events) == ids([first, second]), "deleted without acknowledge()"

        retrieved = await manager.subscribe(sub("c", since_time=first.timestamp, last_id=first.id))
        assert ids(retrieved.events) == [second.id]
        assert (await manager.stats()).buffered_events == 1
        # Deleted on purpose: not a gap.
        batch = await manager.wait_for_events(sub("c", since_time=-1))
        assert ids(batch.events) == [first.id]
        third = await manager.publish("c", 3)
        batch = await manager.wait_for_events(
            sub("c", since_time=first.timestamp, last_id=first.id)
        )
        assert ids(batch.events) == [third.id] and not batch.missed


async def test_without_delete_option_acknowledge_keeps_events() -> None:
    async with running() as (manager, _):
        await manager.publish("c", 1)
        batch = await manager.subscribe(sub("c", since_time=-1))
        await manager.acknowledge(batch)
        assert (await manager.stats()).buffered_events == 1


# ------------------------------------------------------------------- races


def test_timeout_timestamp_is_a_safe_resume_point_within_one_millisecond() -> None:
    """Race (a): an event published after a timeout response, in the same ms, is after it."""

    async def main(loop: JumpingLoop) -> None:
        async with running(Clock()) as (manager, _):  # the wall clock never moves
            event = await manager.publish("c", "seen")
            position = sub("c", since_time=event.timestamp, last_id=event.id)
            for _ in range(3):
                task = asyncio.create_task(manager.wait_for_events(position))
                await wait_for_waiters(manager, 1)
                loop.jump(1.0)  # the 1 s timeout fires
                timeout = await task
                assert timeout.events == [] and not timeout.closing
                assert timeout.timestamp >= event.timestamp

                event = await manager.publish("c", "after the timeout")
                assert event.timestamp > timeout.timestamp
                batch = await manager.wait_for_events(after(timeout, "c"))
                assert ids(batch.events) == [event.id]
                position = after(batch, "c")

    run_jumping(main)


def test_timeout_without_since_time_then_publish_in_same_millisecond() -> None:
    async def main(loop: JumpingLoop) -> None:
        async with running(Clock()) as (manager, _):
            task = asyncio.create_task(manager.wait_for_events(sub("c")))
            await wait_for_waiters(manager, 1)
            loop.jump(1.0)
            timeout = await task
            assert timeout.events == [] and timeout.timestamp == T0
            event = await manager.publish("c", 1)
            batch = await manager.wait_for_events(after(timeout, "c"))
            assert ids(batch.events) == [event.id]

    run_jumping(main)


@pytest.mark.parametrize(
    "when", ["just before the timer", "just after the timer", "after the waiter returned"]
)
def test_event_at_the_instant_of_the_timeout_is_never_lost(when: str) -> None:
    """Race (b): in that response, or returned by the next poll from its position."""

    async def main(loop: JumpingLoop) -> None:
        async with running(Clock()) as (manager, _):
            published: list[Event] = []

            def publish() -> None:
                published.append(publish_now(manager, "c", "at the instant"))

            if when == "just before the timer":
                loop.call_later(1, publish)  # due first, in the same loop iteration
            task = asyncio.create_task(manager.wait_for_events(sub("c")))
            await wait_for_waiters(manager, 1)
            if when == "just after the timer":
                loop.call_later(1, publish)  # due right after the waiter's timer
            elif when == "after the waiter returned":
                task.add_done_callback(lambda _: publish())
            loop.jump(1.0)
            batch = await task
            await asyncio.sleep(0)

            assert len(published) == 1
            next_poll = await poll_now(manager, after(batch, "c"))
            assert ids(batch.events + next_poll.events) == ids(published)
            assert (await manager.stats()).waiting_subscribers == 0

    run_jumping(main)


def test_event_at_the_timeout_instant_with_delete_after_first_is_kept_until_acknowledged() -> None:
    async def main(loop: JumpingLoop) -> None:
        options: dict[str, Any] = {"delete_event_after_first_retrieval": True}
        async with running(Clock(), **options) as (manager, _):
            published: list[Event] = []
            task = asyncio.create_task(manager.wait_for_events(sub("c")))
            await wait_for_waiters(manager, 1)
            loop.call_later(1, lambda: published.append(publish_now(manager, "c", 1)))
            loop.jump(1.0)
            batch = await task
            assert len(published) == 1
            assert (await manager.stats()).buffered_events == 1  # nothing written out yet
            if not batch.events:  # not in that batch: then the next poll gets it
                await manager.acknowledge(batch)
                assert (await manager.stats()).buffered_events == 1
                batch = await poll_now(manager, after(batch, "c"))
            assert ids(batch.events) == ids(published)
            await manager.acknowledge(batch)
            assert (await manager.stats()).buffered_events == 0

    run_jumping(main)


async def test_clock_going_backwards_keeps_timestamps_monotonic() -> None:
    """Race (c)."""
    clock = Clock(T0)
    async with running(clock) as (manager, backend):
        first = await manager.publish("a", 1)
        clock.now = T0 - 100
        second = await manager.publish("b", 2)
        assert second.timestamp == first.timestamp
        clock.now = T0 - 50
        third = await manager.publish("a", 3)
        assert third.timestamp == first.timestamp
        clock.now = T0 + 5
        fourth = await manager.publish("b", 4)
        assert fourth.timestamp == T0 + 5

        point = await backend.resume_point()  # what a timeout response carries
        assert point == T0 + 5
        clock.now = T0 - 1000
        fifth = await manager.publish("a", 5)
        assert fifth.timestamp > point

        events = [first, second, third, fourth, fifth]
        batch = await manager.wait_for_events(sub("a", "b", since_time=-1))
        assert ids(batch.events) == ids(events)
        batch = await manager.wait_for_events(sub("a", "b", since_time=T0, last_id=first.id))
        assert ids(batch.events) == ids(events[1:])
        batch = await manager.wait_for_events(sub("b", "a", since_time=T0, last_id=second.id))
        assert ids(batch.events) == ids(events[2:])
        batch = await manager.wait_for_events(sub("a", since_time=point))
        assert ids(batch.events) == [fifth.id]


async def test_a_category_named_twice_returns_each_event_once() -> None:
    async with running() as (manager, _):
        event = await manager.publish("a", 1)
        batch = await manager.wait_for_events(sub("a", "a", since_time=-1))
        assert ids(batch.events) == [event.id]


# ---------------------------------------------------------------- shutdown


@pytest.mark.parametrize("how", ["begin_shutdown", "aclose"])
async def test_shutdown_answers_waiters_at_once(how: str) -> None:
    manager = LongpollManager(Options(max_longpoll_timeout_seconds=60))
    await manager.start()
    waiters = [
        asyncio.create_task(manager.wait_for_events(Subscription(("a", "b"), 60))),
        asyncio.create_task(manager.wait_for_events(Subscription(("a",), 60))),
    ]
    await wait_for_waiters(manager, 2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    if how == "begin_shutdown":
        manager.begin_shutdown()
        batches = await asyncio.wait_for(asyncio.gather(*waiters), 0.5)
    else:
        await asyncio.wait_for(manager.aclose(), 0.5)
        assert all(waiter.done() for waiter in waiters)
        batches = [waiter.result() for waiter in waiters]
    assert loop.time() - started < 0.5
    for batch in batches:
        assert batch.events == [] and batch.closing
        assert isinstance(batch.timestamp, int)
    assert (await manager.stats()).waiting_subscribers == 0
    assert not manager.running
    with pytest.raises(ManagerClosed):
        await manager.wait_for_events(sub("a"))
    await manager.aclose()


# ------------------------------------------------------------ thread safety


async def test_publish_threadsafe_from_a_worker_thread() -> None:
    async with running() as (manager, _):
        task = asyncio.create_task(manager.wait_for_events(sub("c")))
        await wait_for_waiters(manager, 1)
        caller: list[threading.Thread] = []

        def work() -> Event:
            caller.append(threading.current_thread())
            return manager.publish_threadsafe("c", {"from": "thread"}, 1.0)

        event = await asyncio.to_thread(work)
        assert caller[0] is not threading.current_thread()
        batch = await asyncio.wait_for(task, 0.5)
        assert ids(batch.events) == [event.id]
        assert batch.events[0].data == {"from": "thread"}

        with pytest.raises(InvalidRequest):
            await asyncio.to_thread(manager.publish_threadsafe, "", 1)
        with pytest.raises(RuntimeError, match="publish") as raised:
            manager.publish_threadsafe("c", 2)
        assert not isinstance(raised.value, ManagerClosed)
        assert (await manager.stats()).buffered_events == 1


async def test_publish_threadsafe_when_not_running() -> None:
    manager = LongpollManager()
    with pytest.raises(ManagerClosed):
        await asyncio.to_thread(manager.publish_threadsafe, "c", 1)
    await manager.start()
    await manager.aclose()
    with pytest.raises(ManagerClosed):
        await asyncio.to_thread(manager.publish_threadsafe, "c", 1)


# ------------------------------------------------------------------- add-ons


def stored_event(timestamp: int, category: str, data: Any) -> Event:
    return Event.create(
        timestamp=timestamp, category=category, data=data, data_json=encode_data(data), sequence=0
    )


class RecordingAddOn(AddOn):
    def __init__(self, preload: list[Event] | None = None, fail: bool = False) -> None:
        self.preload = preload or []
        self.fail = fail
        self.published: list[Event] = []
        self.starts = 0
        self.shutdowns = 0

    def on_start(self) -> Iterable[Event]:
        self.starts += 1
        return list(self.preload)

    def on_publish(self, event: Event) -> None:
        self.published.append(event)
        if self.fail:
            raise OSError("disk full")

    async def on_shutdown(self) -> None:
        self.shutdowns += 1


async def test_addon_preloads_events_and_timestamps_continue_after_them() -> None:
    clock = Clock(T0)
    loaded = [stored_event(T0 + 50, "c", 0), stored_event(T0 + 60, "d", 1)]
    addon = RecordingAddOn(loaded)
    async with running(clock, addon=addon) as (manager, _):
        assert addon.starts == 1
        assert (await manager.stats()).buffered_events == 2
        new = await manager.publish("c", 2)  # the clock is behind the loaded events
        assert new.timestamp >= loaded[-1].timestamp

        batch = await manager.wait_for_events(sub("c", "d", since_time=-1))
        assert ids(batch.events) == ids([*loaded, new])
        assert [e.data for e in batch.events] == [0, 1, 2]
        last = loaded[-1]
        batch = await manager.wait_for_events(
            sub("c", "d", since_time=last.timestamp, last_id=last.id)
        )
        assert ids(batch.events) == [new.id]
        assert addon.published == [new]
    assert addon.shutdowns == 1


async def test_addon_async_preload_skips_expired_events() -> None:
    class AsyncPreload(AddOn):
        def on_start(self) -> Any:
            async def events() -> AsyncIterator[Event]:
                yield stored_event(T0 - 5000, "c", "expired")
                yield stored_event(T0 - 10, "c", "fresh")

            return events()

    async with running(Clock(T0), event_ttl_seconds=1, addon=AsyncPreload()) as (manager, _):
        batch = await manager.wait_for_events(sub("c", since_time=-1))
        assert [e.data for e in batch.events] == ["fresh"]


async def test_addon_preload_out_of_order_fails_start() -> None:
    addon = RecordingAddOn([stored_event(T0, "c", 1), stored_event(T0 - 1, "c", 2)])
    manager = LongpollManager(backend=MemoryBackend(clock=Clock()), addon=addon)
    with pytest.raises(ValueError, match="oldest first"):
        await manager.start()
    assert not manager.running
    await manager.aclose()


async def test_failing_on_publish_is_logged_and_publishing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    addon = RecordingAddOn(fail=True)
    async with running(addon=addon) as (manager, _):
        task = asyncio.create_task(manager.wait_for_events(sub("c")))
        await wait_for_waiters(manager, 1)
        with caplog.at_level(logging.ERROR, logger="longpoll"):
            first = await manager.publish("c", 1)
            second = await manager.publish("c", 2)
        batch = await asyncio.wait_for(task, 0.5)
        next_poll = await poll_now(manager, after(batch, "c"))
        assert ids(batch.events + next_poll.events) == ids([first, second])
        assert addon.published == [first, second]
        assert (await manager.stats()).buffered_events == 2

        records = [r for r in caplog.records if r.name == "longpoll"]
        assert len(records) == 2
        assert all(r.levelno == logging.ERROR for r in records)
        assert records[0].exc_info is not None
        assert isinstance(records[0].exc_info[1], OSError)


async def test_on_shutdown_is_called_once_even_if_it_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingShutdown(RecordingAddOn):
        async def on_shutdown(self) -> None:
            await super().on_shutdown()
            raise RuntimeError("flush failed")

    addon = FailingShutdown()
    manager = LongpollManager(addon=addon)
    await manager.start()
    assert addon.shutdowns == 0
    with caplog.at_level(logging.ERROR, logger="longpoll"):
        await manager.aclose()
        await manager.aclose()
    assert addon.shutdowns == 1
    assert any(r.name == "longpoll" and r.exc_info is not None for r in caplog.records)


async def test_on_shutdown_is_called_once_by_concurrent_acloses() -> None:
    class SlowShutdown(RecordingAddOn):
        async def on_shutdown(self) -> None:
            await super().on_shutdown()
            await asyncio.sleep(0.01)  # e.g. a final flush to disk

    addon = SlowShutdown()
    manager = LongpollManager(addon=addon)
    await manager.start()
    await asyncio.gather(manager.aclose(), manager.aclose())
    assert addon.shutdowns == 1
