"""The manager: publishing, waiting for events and the lifecycle around them."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from longpoll.backends.base import Backend
from longpoll.backends.memory import MemoryBackend
from longpoll.errors import ManagerClosed, PersistenceFailed
from longpoll.event import Event, check_category, encode_data
from longpoll.options import Options
from longpoll.subscription import Subscription
from longpoll.waiting import Waiter, WaiterRegistry

logger = logging.getLogger("longpoll")


@dataclass(frozen=True, slots=True)
class Batch:
    """What a subscriber gets: events, or nothing before its timeout.

    `timestamp` is the position to resume from: the last event's timestamp, or,
    when `events` is empty, a point after which every event published later gets
    a larger timestamp. `missed` says that events after
    the subscriber's position were dropped before it asked (the gap signal).
    `closing` says that the manager is shutting down.
    """

    events: list[Event]
    timestamp: int
    missed: bool = False
    closing: bool = False


@dataclass(frozen=True, slots=True)
class ManagerStats:
    """A snapshot of what a manager holds."""

    categories: int
    buffered_events: int
    waiting_subscribers: int


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class LongpollManager:
    """Buffers events per category and hands them to subscribers.

    Use it as `async with LongpollManager(options) as manager:`, or call `start()`
    and `aclose()`, or let `LongpollApp` run it from the ASGI lifespan.
    """

    def __init__(self, options: Options | None = None, *, backend: Backend | None = None) -> None:
        self.options = options if options is not None else Options()
        self._backend = backend if backend is not None else MemoryBackend()
        self._waiters = WaiterRegistry()
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        """True between `start()` and the beginning of shutdown."""
        return self._state is _State.RUNNING

    async def start(self) -> None:
        """Start the backend and load the add-on's events; then serve.

        If loading fails, the backend is closed again and the manager cannot be used.
        """
        if self._state is not _State.NEW:
            raise ManagerClosed("a manager can be started only once")
        self._loop = asyncio.get_running_loop()
        await self._backend.start(self.options, self._waiters.deliver)
        try:
            await self._preload()
        except BaseException:
            self._state = _State.CLOSED
            await self._backend.close()
            raise
        self._state = _State.RUNNING
        logger.debug("manager started")

    def begin_shutdown(self) -> None:
        """Refuse new requests and answer every waiting subscriber at once.

        Synchronous, so that a signal handler can call it via the loop;
        `aclose()` calls it too.
        """
        if self._state is _State.RUNNING:
            self._state = _State.CLOSING
            self._waiters.close_all()
        elif self._state is _State.NEW:
            self._state = _State.CLOSED  # never started: nothing to shut down

    async def aclose(self, grace_seconds: float = 5.0) -> None:
        """Shut down: answer waiters, wait (up to `grace_seconds`) for them, flush add-ons.

        Calling it again, even while a first call runs, waits for the same shutdown.
        """
        self.begin_shutdown()
        if self._shutdown is None:
            if self._state is _State.CLOSED:
                return
            self._shutdown = asyncio.ensure_future(self._shut_down(grace_seconds))
        await asyncio.shield(self._shutdown)

    async def _shut_down(self, grace_seconds: float) -> None:
        try:
            async with asyncio.timeout(grace_seconds):
                await self._waiters.wait_until_empty()
        except TimeoutError:
            logger.warning("%d subscribers still waiting at shutdown", self._waiters.count)
        addon = self.options.addon
        if addon is not None:
            try:
                await addon.on_shutdown()
            except Exception:
                logger.exception("add-on failed in on_shutdown")
        await self._backend.close()
        self._state = _State.CLOSED
        logger.debug("manager closed")

    async def _preload(self) -> None:
        addon = self.options.addon
        if addon is None:
            return
        addon.on_attach(self.options)
        events = addon.on_start()
        if isinstance(events, AsyncIterable):
            async for event in events:
                await self._backend.load(event)
        else:
            for event in events:
                await self._backend.load(event)

    async def __aenter__(self) -> LongpollManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def publish(self, category: str, data: Any) -> Event:
        """Publish `data` (anything JSON can encode, but None) on `category`.

        Raises `InvalidRequest` before storing anything if an argument is bad, and
        `ManagerClosed` when the manager is not running. With an add-on that makes
        events durable (`FilePersistor(fsync=True)`), returns once the event is on
        disk, and raises `PersistenceFailed` if it could not be.
        """
        check_category(category)
        return await self._store(category, data, encode_data(data))

    def publish_threadsafe(self, category: str, data: Any, timeout: float | None = None) -> Event:
        """Publish from a thread other than the manager's event loop, waiting for the result."""
        check_category(category)
        data_json = encode_data(data)
        loop = self._loop
        if loop is None or not self.running:
            raise ManagerClosed("the manager is not running")
        if _running_loop() is loop:
            raise RuntimeError("publish_threadsafe() called on the manager's loop: use publish()")
        future = asyncio.run_coroutine_threadsafe(self._store(category, data, data_json), loop)
        return future.result(timeout)

    async def _store(self, category: str, data: Any, data_json: bytes) -> Event:
        self._check_running()
        event = await self._backend.append(category, data, data_json)
        addon = self.options.addon
        if addon is not None:
            try:
                durable = addon.on_publish(event)
            except Exception:
                logger.exception("add-on failed in on_publish")
            else:
                # An add-on that returns an awaitable (FilePersistor with fsync) holds
                # the acknowledgement until the event is safe with it.
                if durable is not None:
                    try:
                        await durable
                    except Exception as exc:
                        logger.exception("add-on could not persist event %s", event.id)
                        message = f"event {event.id} could not be persisted: {exc}"
                        raise PersistenceFailed(message) from exc
        return event

    async def wait_for_events(
        self,
        subscription: Subscription,
        watch_disconnect: Callable[[], asyncio.Future[Any]] | None = None,
    ) -> Batch:
        """Return the events after the subscription's position, waiting for new ones.

        The wait ends with events, at the timeout, at shutdown, or when the future
        that `watch_disconnect()` returns (called only if a wait is needed) is done.
        With delete-after-first-retrieval, pass the batch to `acknowledge()` once
        it reached the subscriber; `subscribe()` does both.
        """
        subscription.check(
            self.options.max_longpoll_timeout_seconds, self.options.max_categories_per_request
        )
        self._check_running()
        loop = asyncio.get_running_loop()
        waiter = Waiter(subscription.categories, loop.create_future())
        # Registered before reading, so that an event published during the read
        # (which may suspend, in other backends) still wakes this waiter.
        self._waiters.add(waiter)
        try:
            found = await self._backend.read(subscription)
        except BaseException:
            self._waiters.remove(waiter)
            raise
        if found.events:
            self._waiters.remove(waiter)
            return Batch(found.events, found.events[-1].timestamp, found.missed)
        missed = found.missed
        # A backend whose notify lags behind its reads can still hand the waiter
        # events up to `found.through`, which the read saw: the subscriber had them.
        through = found.through
        disconnected = watch_disconnect() if watch_disconnect is not None else None
        deadline = loop.time() + subscription.timeout_seconds
        remaining: float = subscription.timeout_seconds
        while True:
            await self._waiters.wait(waiter, remaining, disconnected)
            events = _newer(waiter.events, through)
            if events:
                return Batch(events, events[-1].timestamp, missed)
            if disconnected is not None and disconnected.done():
                # The subscriber is gone and reads no answer: no resume point to take.
                return Batch([], 0, missed)
            remaining = deadline - loop.time()
            if not waiter.events or remaining <= 0 or self._state is not _State.RUNNING:
                break  # a timeout or a shutdown
            # Woken only by events the subscriber had: wait out the rest of the
            # timeout. Nothing ran on the loop since the old waiter was unregistered.
            waiter = Waiter(subscription.categories, loop.create_future())
            self._waiters.add(waiter)
        timestamp, late = await self._backend.resume_after_wait(subscription.categories)
        late = _newer(late, through)
        if late:
            return Batch(late, late[-1].timestamp, missed, closing=waiter.closing)
        return Batch([], timestamp, missed, closing=waiter.closing)

    async def acknowledge(self, batch: Batch) -> None:
        """Record that `batch` reached its subscriber (deletes it if so configured)."""
        if self.options.delete_event_after_first_retrieval and batch.events:
            await self._backend.remove(batch.events)
            addon = self.options.addon
            if addon is not None:
                try:
                    addon.on_delete(batch.events)
                except Exception:
                    logger.exception("add-on failed in on_delete")

    async def subscribe(self, subscription: Subscription) -> Batch:
        """Wait for events like `wait_for_events`, treating them as retrieved on return."""
        batch = await self.wait_for_events(subscription)
        await self.acknowledge(batch)
        return batch

    async def stats(self) -> ManagerStats:
        """Count categories, buffered events and waiting subscribers."""
        backend = await self._backend.stats()
        return ManagerStats(backend.categories, backend.buffered_events, self._waiters.count)

    def _check_running(self) -> None:
        if self._state is not _State.RUNNING:
            state = "not started" if self._state is _State.NEW else "shutting down"
            raise ManagerClosed(f"the manager is {state}")


def _newer(events: list[Event], through: tuple[int, int] | None) -> list[Event]:
    """The events (in publish order) after the position `through`, if given."""
    if through is None or not events or (events[0].timestamp, events[0].sequence) > through:
        return events
    return [event for event in events if (event.timestamp, event.sequence) > through]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
