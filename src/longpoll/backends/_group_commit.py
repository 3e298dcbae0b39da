"""Group commit: calls made while one batch is in flight go out together in the next."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


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
        if self._closed:
            raise self._closed_error()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def aclose(self, grace_seconds: float) -> None:
        """Refuse new items, wait up to `grace_seconds` for the batches under way,
        then fail what is left."""
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
