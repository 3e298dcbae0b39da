"""WaiterRegistry: timeouts that share loop timers, wake-ups, and nothing left behind."""

from __future__ import annotations

import asyncio

from longpoll.event import Event
from longpoll.waiting import DEADLINE_TICK_SECONDS, Waiter, WaiterRegistry


def _waiter(category: str) -> Waiter:
    return Waiter((category,), asyncio.get_running_loop().create_future())


async def _wait_timed(registry: WaiterRegistry, waiter: Waiter, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    registry.add(waiter)
    await registry.wait(waiter, seconds)
    return loop.time() - start


async def test_timeouts_end_on_time_sharing_timers_and_leave_nothing() -> None:
    registry = WaiterRegistry()
    waiters = [_waiter(f"c{n % 3}") for n in range(300)]
    timeouts = [0.2 + (n % 7) * 0.03 for n in range(300)]
    elapsed = await asyncio.gather(
        *(_wait_timed(registry, w, t) for w, t in zip(waiters, timeouts, strict=True))
    )
    for took, timeout in zip(elapsed, timeouts, strict=True):
        assert timeout <= took < timeout + DEADLINE_TICK_SECONDS + 0.25
    assert all(not waiter.events for waiter in waiters)
    assert registry.count == 0
    assert registry._deadlines._due == {}


async def test_woken_waiters_leave_their_deadline_and_the_rest_still_time_out() -> None:
    registry = WaiterRegistry()
    woken, idle = _waiter("news"), _waiter("other")
    tasks = [
        asyncio.create_task(_wait_timed(registry, woken, 0.5)),
        asyncio.create_task(_wait_timed(registry, idle, 0.5)),
    ]
    await asyncio.sleep(0.05)
    event = Event.create(timestamp=1, category="news", data=1, data_json=b"1", sequence=1)
    registry.deliver(event)
    woken_after, idle_after = await asyncio.gather(*tasks)
    assert woken.events == [event] and woken_after < 0.3
    assert idle.events == [] and idle_after >= 0.5
    assert registry.count == 0
    assert registry._deadlines._due == {}
