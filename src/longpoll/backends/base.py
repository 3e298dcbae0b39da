"""The storage interface that every backend implements."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from longpoll.event import Event
from longpoll.options import Options
from longpoll.subscription import Subscription


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Buffered events that a subscription asked for, oldest first.

    `missed` is true when events after the subscription's position were dropped
    from the buffer (for size or age) before it asked.

    `through` is the position (timestamp, sequence) the read went through: the
    subscriber has, or does not want, every event up to it, and a waiter handed
    such an event later (by a backend whose wake-ups lag behind its reads, like
    Redis's) drops it. None when any later wake-up is for the subscriber, as for
    a position in the future, which waits for whatever comes next.
    """

    events: list[Event]
    missed: bool = False
    through: tuple[int, int] | None = None


class Repeated(NamedTuple):
    """What `append` returns for an event id already stored in the category: the
    event stored then, unchanged (nothing new is stored)."""

    event: Event


Stored = Event | Repeated
"""What an append gives: the new event, or the one stored before under its id."""


@dataclass(frozen=True, slots=True)
class BackendStats:
    """What a backend holds."""

    categories: int
    buffered_events: int
    buffered_bytes: int | None = None
    """Bytes of the buffered events' JSON, where the backend keeps count."""


@dataclass(frozen=True, slots=True)
class CategoryStats:
    """What one category holds: its buffered events, and the subscribers waiting
    for it in this process (always 0 from a backend, which knows none)."""

    name: str
    buffered_events: int
    waiting_subscribers: int = 0


@dataclass(slots=True)
class EventCounts:
    """How many events went each way in this process: plain integers, cheap to
    count where it happens, read by the metrics."""

    backend_errors: int = 0
    published: int = 0
    delivered: int = 0
    dropped_for_size: int = 0
    expired: int = 0
    deleted: int = 0


class Backend(ABC):
    """Stores events per category and assigns their timestamps and order.

    A backend knows nothing of HTTP. It calls the `notify` function it is started
    with for every event published, on the event loop, so that waiting subscribers
    of this process are woken.
    """

    drops_counted: ClassVar[bool] = False
    """True for a backend that counts the events it drops (for size, for age)."""

    def __init__(self) -> None:
        self.counts = EventCounts()
        """Where the backend (and the manager using it) count what happens."""

    @abstractmethod
    async def start(self, options: Options, notify: Callable[[Event], None]) -> None:
        """Prepare to serve with `options`; call `notify` for each new event."""

    @abstractmethod
    async def close(self) -> None:
        """Release what `start` acquired."""

    @abstractmethod
    async def append(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None = None
    ) -> Stored:
        """Store a new event, giving it a timestamp, an id and its place in the order.

        With `event_id` (the publisher's), the event gets that id, unless the
        category still holds an event with it: then nothing is stored, and that
        event comes back as `Repeated`, so that a publisher may retry safely.
        """

    def append_nowait(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None = None
    ) -> Stored | None:
        """`append` at once, for a backend that can store without waiting; else None.

        A server answers a publish inside the callback that parsed it when this
        returns an event. The default returns None: the caller awaits `append`.
        """
        return None

    @abstractmethod
    async def load(self, event: Event) -> None:
        """Store an event published earlier (from an add-on), keeping its timestamp and id.

        Events must be loaded oldest first; one older than the newest stored
        raises `ValueError`. Events already past the TTL are skipped.
        """

    @abstractmethod
    async def read(self, subscription: Subscription) -> ReadResult:
        """Return the buffered events after the subscription's position."""

    def read_nowait(self, subscription: Subscription) -> ReadResult | None:
        """`read` at once, for a backend that can read without waiting; else None."""
        return None

    @abstractmethod
    async def remove(self, events: Sequence[Event]) -> None:
        """Delete events that were retrieved (delete after first retrieval)."""

    def remove_nowait(self, events: Sequence[Event]) -> bool:
        """`remove` at once if this backend can without waiting; False if it cannot."""
        return False

    @abstractmethod
    async def resume_point(self) -> int:
        """A timestamp to resume from safely: every later event gets a larger one."""

    def resume_point_nowait(self) -> int | None:
        """`resume_point` at once, for a backend that notifies inside `append`; else None.

        Used in place of `resume_after_wait` when it answers.
        """
        return None

    async def resume_after_wait(self, categories: Sequence[str]) -> tuple[int, list[Event]]:
        """Answer a waiter of `categories` that stopped waiting without events.

        Returns a safe resume point and the events of those categories that were
        stored but not yet handed to `notify` when the wait ended (a backend that
        learns of events asynchronously, from other processes, can have such
        events; they must reach the waiter, or a client resuming from the point
        would skip them). The manager calls it right after the waiter is
        unregistered, before anything else runs on the loop. By default: the
        `resume_point()` and no events, which is right for a backend that calls
        `notify` inside `append`.
        """
        return await self.resume_point(), []

    @abstractmethod
    async def stats(self) -> BackendStats:
        """Count what is stored."""

    async def category_stats(self, limit: int) -> list[CategoryStats]:
        """The buffered events of the `limit` categories most recently published to,
        in any order; by default none (a backend that cannot tell)."""
        return []

    async def ping(self) -> None:  # noqa: B027 (a store in this process is always there)
        """Raise `BackendUnavailable` if the store cannot be reached now."""
