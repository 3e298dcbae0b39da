"""What the backends (and the file add-on) share: the clock, TTLs, the periodic
purge, resume positions and group commit."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def wall_clock_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def ttl_ms(ttl_seconds: float | None) -> int | None:
    """`Options.event_ttl_seconds` in whole milliseconds (at least 1), or None."""
    return None if ttl_seconds is None else max(1, round(ttl_seconds * 1000))


async def purge_periodically(
    ttl_seconds: float, purge: Callable[[], Awaitable[None] | None]
) -> None:
    """Call `purge` (awaiting what it returns) every TTL, at least every second, until
    cancelled."""
    while True:
        await asyncio.sleep(min(ttl_seconds, 1.0))
        pending = purge()
        if pending is not None:
            await pending


AFTER_ALL_OF_A_MILLISECOND = 2**63
"""A sequence number above every event's: (ms, this) is a position after all of ms."""


def resume_cut(
    since: int, last_id: uuid.UUID | None, known: Iterable[tuple[int, int, uuid.UUID]]
) -> tuple[int, int]:
    """The position a read resumes after: after all of millisecond `since`, or after
    the event `last_id` of that millisecond among `known` (timestamp, sequence, id of
    the buffered events and the dropped-event markers that may be it); before all of
    that millisecond if `last_id` is not among them, as golongpoll does.

    `known` is read lazily, and only up to the event found.
    """
    if last_id is None:
        return (since, AFTER_ALL_OF_A_MILLISECOND)
    for timestamp, sequence, event_id in known:
        if timestamp == since and event_id == last_id:
            return (timestamp, sequence)
    return (since, -1)


class GroupCommit(Generic[Item, Result]):
    """Hands submitted items to `run` in batches, one batch in flight at a time.

    `run` gets the items in submission order and returns one result per item: a
    value, or an exception instance for an item that failed. If `run` raises, every
    item of its batch fails with that exception. Under load a batch holds what
    arrived during the previous one, so one round trip serves many callers; alone,
    an item goes out at once.
    """

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[list[Result | Exception]]],
        closed_error: Callable[[], Exception],
    ) -> None:
        self._run = run
        self._closed_error = closed_error
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, item: Item) -> Result:
        """Send `item` with the next batch and return its result."""
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """Queue `item` for the next batch now; its result comes in the future.

        Cancelling the future before its batch goes out leaves the item out.
        """
        if self._closed:
            raise self._closed_error()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def aclose(self, grace_seconds: float | None) -> None:
        """Refuse new items, wait up to `grace_seconds` (None: as long as it takes)
        for the batches under way, then fail what is left."""
        self._closed = True
        flusher = self._flusher
        if flusher is not None:
            _, pending = await asyncio.wait([flusher], timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.wait([flusher])
        self._fail_the_rest()

    async def _flush(self) -> None:
        try:
            while self._pending:
                # A caller cancelled before its batch went out is not sent at all.
                self._in_flight = [entry for entry in self._pending if not entry[1].done()]
                self._pending = []
                batch = self._in_flight
                try:
                    results = await self._run([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} items")
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue  # its caller was cancelled
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                self._in_flight = []
        finally:
            self._flusher = None
            self._fail_the_rest()

    def _fail_the_rest(self) -> None:
        # After a cancellation (by `aclose`) the callers get an error, not a
        # cancellation that is not theirs.
        for _, future in self._in_flight + self._pending:
            if not future.done():
                future.set_exception(self._closed_error())
        self._in_flight = []
        self._pending = []
