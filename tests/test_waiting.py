"""WaiterRegistry: position-aware delivery, shared deadline timers, nothing left behind."""

from __future__ import annotations

import asyncio

from longpoll.event import Event
from longpoll.waiting import DEADLINE_TICK_SECONDS, Batch, Waiter, WaiterRegistry


class Recorder(Waiter):
    """A waiter that records how it was answered, and when."""

    __slots__ = ("answered", "batches", "errors")

    def __init__(self, *categories: str) -> None:
        super().__init__(categories)
        self.batches: list[Batch] = []
        self.errors: list[Exception] = []
        self.answered = asyncio.get_running_loop().create_future()

    def complete(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.answered.set_result(asyncio.get_running_loop().time())

    def fail(self, error: Exception) -> None:
        self.errors.append(error)


def event(category: str, timestamp: int, sequence: int) -> Event:
    return Event.create(
        timestamp=timestamp, category=category, data=sequence, data_json=b"0", sequence=sequence
    )


class Expiries:
    """The registry's `on_expire`: answers with an empty batch and counts closings."""

    def __init__(self) -> None:
        self.closing = 0

    def __call__(self, waiter: Waiter, closing: bool) -> None:
        self.closing += closing
        waiter.complete(Batch([], 0, closing=closing))


async def test_timeouts_end_on_time_sharing_timers_and_leave_nothing() -> None:
    registry = WaiterRegistry(Expiries())
    loop = asyncio.get_running_loop()
    start = loop.time()
    waiters = [Recorder(f"c{n % 3}") for n in range(300)]
    timeouts = [0.2 + (n % 7) * 0.03 for n in range(300)]
    for waiter, timeout in zip(waiters, timeouts, strict=True):
        registry.add(waiter, timeout)
    ended = await asyncio.gather(*(waiter.answered for waiter in waiters))
    for at, timeout in zip(ended, timeouts, strict=True):
        assert timeout <= at - start < timeout + DEADLINE_TICK_SECONDS + 0.25
    assert all(waiter.batches[0].events == [] for waiter in waiters)
    assert registry.count == 0
    assert registry._deadlines._due == {}


async def test_an_answered_waiter_leaves_its_deadline_and_the_rest_time_out() -> None:
    registry = WaiterRegistry(Expiries())
    woken, idle = Recorder("news"), Recorder("other")
    registry.add(woken, 0.5)
    registry.add(idle, 0.5)
    news = event("news", 1, 1)
    registry.deliver(news)
    await asyncio.wait_for(woken.answered, 0.3)
    assert woken.batches == [Batch([news], 1)]
    assert registry.count == 1
    await asyncio.wait_for(idle.answered, 1)
    assert idle.batches == [Batch([], 0)]
    assert registry.count == 0
    assert registry._deadlines._due == {}


async def test_a_waiter_gets_only_events_after_its_position() -> None:
    registry = WaiterRegistry(Expiries())
    waiter = Recorder("c")
    waiter.position = (5, 5)
    registry.add(waiter, 5)
    registry.deliver(event("c", 4, 9))
    registry.deliver(event("c", 5, 5))
    later = event("c", 5, 6)
    registry.deliver(later)
    await asyncio.wait_for(waiter.answered, 1)
    assert waiter.batches == [Batch([later], 5)]


async def test_a_burst_goes_out_in_one_answer_in_order() -> None:
    registry = WaiterRegistry(Expiries())
    waiter = Recorder("a", "b")
    registry.add(waiter, 5)
    burst = [event("a", 1, 1), event("b", 1, 2), event("a", 2, 3)]
    for published in burst:
        registry.deliver(published)
    await asyncio.wait_for(waiter.answered, 1)
    assert waiter.batches == [Batch(burst, 2)]


async def test_a_reading_waiter_holds_events_until_its_position_is_known() -> None:
    registry = WaiterRegistry(Expiries())
    waiter = Recorder("c")
    waiter.reading = True
    registry.add(waiter, None)
    seen, new = event("c", 3, 3), event("c", 4, 4)
    registry.deliver(seen)
    registry.deliver(new)
    await asyncio.sleep(0.01)
    assert not waiter.answered.done()  # held while its read is under way
    waiter.position = (3, 3)  # the read went through the first event
    registry.arm(waiter, 5)
    await asyncio.wait_for(waiter.answered, 1)
    assert waiter.batches == [Batch([new], 4)]
    assert registry.count == 0


async def test_a_removed_waiter_is_never_answered() -> None:
    registry = WaiterRegistry(Expiries())
    waiter = Recorder("c")
    registry.add(waiter, 0.05)
    registry.deliver(event("c", 1, 1))
    assert registry.remove(waiter)
    assert not registry.remove(waiter)
    await asyncio.sleep(0.2)
    assert waiter.batches == [] and not waiter.answered.done()
    assert registry.count == 0


async def test_close_all_answers_every_waiter_once() -> None:
    expiries = Expiries()
    registry = WaiterRegistry(expiries)
    waiters = [Recorder("a", "b"), Recorder("b"), Recorder("c")]
    for waiter in waiters:
        registry.add(waiter, 60)
    registry.close_all()
    assert [len(waiter.batches) for waiter in waiters] == [1, 1, 1]
    assert all(waiter.batches[0].closing for waiter in waiters)
    assert expiries.closing == 3
    assert registry.count == 0
