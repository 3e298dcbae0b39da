"""The manager: publishing, waiting for events and the lifecycle around them."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from longpoll.addons.base import AddOn
from longpoll.backends.base import (
    Backend,
    CategoryStats,
    EventCounts,
    ReadResult,
    Repeated,
    Stored,
)
from longpoll.backends.memory import MemoryBackend
from longpoll.errors import InvalidRequest, ManagerClosed, PersistenceFailed
from longpoll.event import Event, check_category, encode_data
from longpoll.options import Options
from longpoll.subscription import Subscription
from longpoll.waiting import Batch, FutureWaiter, Waiter, WaiterRegistry

logger = logging.getLogger("longpoll")


@dataclass(frozen=True, slots=True)
class ManagerStats:
    """A snapshot of what a manager holds."""

    categories: int
    buffered_events: int
    waiting_subscribers: int
    buffered_bytes: int | None = None
    """Bytes of the buffered events' JSON, where the backend keeps count (memory)."""


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class LongpollManager:
    """Buffers events per category and hands them to subscribers.

    Use it as `async with LongpollManager(options) as manager:`, or call `start()`
    and `aclose()`, or let `LongpollApp` run it from the ASGI lifespan. `backend`
    stores the events (default: `MemoryBackend()`); `addon` is called on start,
    publish, delete and shutdown (see `longpoll.addons`).
    """

    def __init__(
        self,
        options: Options | None = None,
        *,
        backend: Backend | None = None,
        addon: AddOn | None = None,
    ) -> None:
        if addon is not None and not isinstance(addon, AddOn):
            raise ValueError("addon must be an instance of longpoll.addons.AddOn")
        self.options = options if options is not None else Options()
        self.addon = addon
        self._backend = backend if backend is not None else MemoryBackend()
        if not isinstance(getattr(self._backend, "counts", None), EventCounts):
            self._backend.counts = EventCounts()  # a backend that skipped Backend.__init__
        self.counts = self._backend.counts
        """What happened to events here (see `EventCounts`)."""
        self._waiters = WaiterRegistry(self._expire)
        # Work a backend must wait for, started for one request (a read, a timeout answer).
        self._tasks: set[asyncio.Task[None]] = set()
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
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            logger.warning("%d subscribers still waiting at shutdown", self._waiters.count)
        addon = self.addon
        if addon is not None:
            try:
                await addon.on_shutdown()
            except Exception:
                logger.exception("add-on failed in on_shutdown")
        await self._backend.close()
        self._state = _State.CLOSED
        logger.debug("manager closed")

    async def _preload(self) -> None:
        addon = self.addon
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

    async def publish(
        self, category: str, data: Any, *, event_id: uuid.UUID | None = None
    ) -> Event:
        """Publish `data` (anything JSON can encode, but None) on `category`.

        With `event_id`, the event gets that id; publishing the same id to the
        same category again, while the category still buffers the event, stores
        nothing and returns the event stored the first time: a publish retried
        with its id is stored once.

        Raises `InvalidRequest` before storing anything if an argument is bad, and
        `ManagerClosed` when the manager is not running. With an add-on that makes
        events durable (`FilePersistor(fsync=True)`), returns once the event is on
        disk, and raises `PersistenceFailed` if it could not be.
        """
        check_category(category)
        if event_id is not None and not isinstance(event_id, uuid.UUID):
            raise InvalidRequest("event_id must be a uuid.UUID")
        stored = self.publish_nowait(category, data, encode_data(data), event_id)
        if not isinstance(stored, Event | Repeated):
            stored = await stored
        return stored.event if isinstance(stored, Repeated) else stored

    def publish_threadsafe(self, category: str, data: Any, timeout: float | None = None) -> Event:
        """Publish from a thread other than the manager's event loop, waiting for the result."""
        check_category(category)
        data_json = encode_data(data)
        loop = self._loop
        if loop is None or not self.running:
            raise ManagerClosed("the manager is not running")
        if _running_loop() is loop:
            raise RuntimeError("publish_threadsafe() called on the manager's loop: use publish()")
        storing = self._publish_checked(category, data, data_json)
        return asyncio.run_coroutine_threadsafe(storing, loop).result(timeout)

    async def _publish_checked(self, category: str, data: Any, data_json: bytes) -> Event:
        stored = self.publish_nowait(category, data, data_json)
        if not isinstance(stored, Event | Repeated):
            stored = await stored
        return stored.event if isinstance(stored, Repeated) else stored

    def publish_nowait(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None = None
    ) -> Stored | Coroutine[Any, Any, Stored]:
        """Store an event whose category is checked and data encoded (`encode_data`).

        Returns the event (or, for an `event_id` stored before, `Repeated`) when
        the backend and add-on could store it without waiting; else a coroutine
        to await for it. Raises `ManagerClosed` when the manager is not running.
        """
        self._check_running()
        stored = self._backend.append_nowait(category, data, data_json, event_id)
        if stored is None:
            return self._store(category, data, data_json, event_id)
        if type(stored) is Repeated:
            return stored
        event: Any = stored
        self.counts.published += 1
        durable = self._on_publish(event)
        return event if durable is None else self._made_durable(event, durable)

    async def _store(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None
    ) -> Stored:
        stored = await self._backend.append(category, data, data_json, event_id)
        if isinstance(stored, Repeated):
            return stored
        self.counts.published += 1
        durable = self._on_publish(stored)
        return stored if durable is None else await self._made_durable(stored, durable)

    def _on_publish(self, event: Event) -> Awaitable[Any] | None:
        """Call the add-on; an awaitable it returns holds the acknowledgement."""
        addon = self.addon
        if addon is None:
            return None
        try:
            return addon.on_publish(event)
        except Exception:
            logger.exception("add-on failed in on_publish")
            return None

    async def _made_durable(self, event: Event, durable: Awaitable[Any]) -> Event:
        try:
            await durable
        except Exception as exc:
            logger.exception("add-on could not persist event %s", event.id)
            raise PersistenceFailed(f"event {event.id} could not be persisted: {exc}") from exc
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
        return await self.wait_checked(subscription, watch_disconnect)

    async def wait_checked(
        self,
        subscription: Subscription,
        watch_disconnect: Callable[[], asyncio.Future[Any]] | None = None,
    ) -> Batch:
        """`wait_for_events` for a subscription already checked (`parse_subscription`)."""
        waiter = FutureWaiter(subscription.categories, asyncio.get_running_loop().create_future())
        reading = self.start_wait(subscription, waiter)
        if reading is not None:
            await reading
        future = waiter.future
        if future.done():
            return future.result()
        disconnected = watch_disconnect() if watch_disconnect is not None else None

        def gone(_: object) -> None:
            # The subscriber reads no answer: no resume point to take.
            if waiter.tick >= 0:
                self.forget(waiter)
                waiter.complete(Batch([], 0, waiter.missed))

        if disconnected is not None:
            disconnected.add_done_callback(gone)
        try:
            return await future
        finally:
            self._waiters.remove(waiter)
            if disconnected is not None:
                disconnected.remove_done_callback(gone)

    def start_wait(
        self, subscription: Subscription, waiter: Waiter
    ) -> Coroutine[Any, Any, None] | None:
        """Answer `waiter` from the buffer, or register it to wait for new events.

        Returns None once that is done; for a backend that must wait to read,
        returns a coroutine that finishes the job (a server runs it as a task of
        its own; an error it raises is the subscriber's answer). The subscription
        must be checked already. Raises `ManagerClosed` when not running.
        """
        self._check_running()
        return self._read(subscription, waiter, self._settle)

    def start_stream(
        self, subscription: Subscription, waiter: Waiter
    ) -> Coroutine[Any, Any, None] | None:
        """Start a stream: `waiter` (one that `stays`) gets every event after the
        subscription's position, batch by batch, until it is forgotten or the
        manager shuts down (a closing batch).

        Its first batch comes at once: the buffered events after the position, or
        none; `missed` says there is a gap before them. A subscription without
        `since_time` starts at a safe resume point, the first batch's `timestamp`.
        Returns None once that is done, or a coroutine that finishes it (an error
        it raises means the stream never started), as `start_wait` does.
        """
        if not waiter.stays:
            raise TypeError("a stream needs a waiter that stays registered")
        self._check_running()
        if subscription.since_time is None:
            point = self._backend.resume_point_nowait()
            if point is None:
                return self._stream_from_resume_point(subscription, waiter)
            subscription = dataclasses.replace(subscription, since_time=point)
        return self._read(subscription, waiter, self._open_stream)

    async def _stream_from_resume_point(self, subscription: Subscription, waiter: Waiter) -> None:
        point = await self._backend.resume_point()
        starting = self.start_stream(dataclasses.replace(subscription, since_time=point), waiter)
        if starting is not None:
            await starting

    def _read(
        self,
        subscription: Subscription,
        waiter: Waiter,
        then: Callable[[Subscription, Waiter, ReadResult], None],
    ) -> Coroutine[Any, Any, None] | None:
        """Read the buffer for `waiter` and pass what is found to `then`: at once where
        the backend can, else in the coroutine returned."""
        found = self._backend.read_nowait(subscription)
        if found is None:
            # Registered before reading, so that an event published during the read
            # still reaches the waiter (held until the read tells its position).
            waiter.reading = True
            self._waiters.add(waiter, None)
            return self._read_later(subscription, waiter, then)
        then(subscription, waiter, found)
        return None

    async def _read_later(
        self,
        subscription: Subscription,
        waiter: Waiter,
        then: Callable[[Subscription, Waiter, ReadResult], None],
    ) -> None:
        try:
            found = await self._backend.read(subscription)
        except BaseException:
            self._waiters.remove(waiter)
            raise
        if waiter.tick >= 0:  # still registered: neither gone nor shut down
            then(subscription, waiter, found)

    def _open_stream(self, subscription: Subscription, waiter: Waiter, found: ReadResult) -> None:
        events = found.events
        position = found.through
        if events and (position is None or events[-1].position > position):
            position = events[-1].position
        waiter.position = position
        # Registered (and the events held during a read passed on, later) before
        # the first batch is written: writing may find the client gone.
        if waiter.reading:
            self._waiters.arm(waiter, None)
        else:
            self._waiters.add(waiter, None)
        assert subscription.since_time is not None
        timestamp = events[-1].timestamp if events else subscription.since_time
        waiter.complete(Batch(events, timestamp, found.missed))

    def forget(self, waiter: Waiter) -> None:
        """Stop waiting for `waiter` (its client left), without answering it."""
        self._waiters.remove(waiter)

    def _settle(self, subscription: Subscription, waiter: Waiter, found: ReadResult) -> None:
        if found.events:
            self._waiters.remove(waiter)
            waiter.complete(Batch(found.events, found.events[-1].timestamp, found.missed))
            return
        waiter.position = found.through
        waiter.missed = found.missed
        if waiter.reading:
            self._waiters.arm(waiter, subscription.timeout_seconds)
        else:
            self._waiters.add(waiter, subscription.timeout_seconds)

    def _expire(self, waiter: Waiter, closing: bool) -> None:
        """Answer a waiter whose timeout passed (or that a shutdown ended) with no events."""
        if waiter.stays:  # a stream has no timeout: the shutdown ends it
            waiter.complete(Batch([], 0, False, closing))
            return
        point = self._backend.resume_point_nowait()
        if point is not None:
            waiter.complete(Batch([], point, waiter.missed, closing))
            return
        task = asyncio.get_running_loop().create_task(self._expire_later(waiter, closing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_later(self, waiter: Waiter, closing: bool) -> None:
        try:
            point, late = await self._backend.resume_after_wait(waiter.categories)
        except Exception as exc:
            waiter.fail(exc)
            return
        position = waiter.position
        if position is not None:
            late = [event for event in late if event.position > position]
        if late:
            waiter.complete(Batch(late, late[-1].timestamp, waiter.missed, closing))
        else:
            waiter.complete(Batch([], point, waiter.missed, closing))

    async def acknowledge(self, batch: Batch) -> None:
        """Record that `batch` reached its subscriber (deletes it if so configured)."""
        pending = self.acknowledge_nowait(batch)
        if pending is not None:
            await pending

    def acknowledge_nowait(self, batch: Batch) -> Coroutine[Any, Any, None] | None:
        """`acknowledge` at once where the backend can; else a coroutine to await."""
        self.counts.delivered += len(batch.events)
        if not (self.options.delete_event_after_first_retrieval and batch.events):
            return None
        if self._backend.remove_nowait(batch.events):
            self._on_delete(batch.events)
            return None
        return self._remove(batch.events)

    async def _remove(self, events: list[Event]) -> None:
        await self._backend.remove(events)
        self._on_delete(events)

    def _on_delete(self, events: list[Event]) -> None:
        self.counts.deleted += len(events)
        addon = self.addon
        if addon is not None:
            try:
                addon.on_delete(events)
            except Exception:
                logger.exception("add-on failed in on_delete")

    async def subscribe(self, subscription: Subscription) -> Batch:
        """Wait for events like `wait_for_events`, treating them as retrieved on return."""
        batch = await self.wait_for_events(subscription)
        await self.acknowledge(batch)
        return batch

    @property
    def waiting(self) -> int:
        """Subscribe requests waiting for events in this process."""
        return self._waiters.count

    @property
    def drops_counted(self) -> bool:
        """True if `counts` holds the events the backend dropped (for size, for age)."""
        return self._backend.drops_counted

    async def check_ready(self) -> None:
        """Raise `ManagerClosed` unless running, `BackendUnavailable` if the backend
        cannot be reached: what a readiness probe asks."""
        self._check_running()
        await self._backend.ping()

    async def stats(self) -> ManagerStats:
        """Count categories, buffered events and waiting subscribers."""
        backend = await self._backend.stats()
        return ManagerStats(
            backend.categories, backend.buffered_events, self._waiters.count, backend.buffered_bytes
        )

    async def category_stats(self, limit: int = 1000) -> list[CategoryStats]:
        """Per category, sorted by name: its buffered events and the subscribers of
        this process waiting for it.

        Lists the `limit` categories most recently published to, then categories
        that subscribers wait for without events, up to `limit` in all.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        stored = await self._backend.category_stats(limit)
        waiting = self._waiters.count_by_category()
        listed = {
            each.name: dataclasses.replace(each, waiting_subscribers=waiting.get(each.name, 0))
            for each in stored
        }
        for name, count in waiting.items():
            if len(listed) >= limit:
                break
            if name not in listed:
                listed[name] = CategoryStats(name, 0, count)
        return sorted(listed.values(), key=lambda stats: stats.name)

    def _check_running(self) -> None:
        if self._state is not _State.RUNNING:
            state = "not started" if self._state is _State.NEW else "shutting down"
            raise ManagerClosed(f"the manager is {state}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
