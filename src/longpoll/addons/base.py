"""The add-on hooks a manager calls on start, publish, delete and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING

from longpoll.event import Event

if TYPE_CHECKING:
    from longpoll.options import Options


class AddOn:
    """Base class of add-ons: every hook does nothing until overridden.

    Subclass it, override only the hooks that matter and pass an instance as
    `LongpollManager(addon=...)`. The manager calls the hooks on its event loop,
    in this order: `on_attach` and `on_start` once from `start()`, then
    `on_publish` for each event published and `on_delete` for events removed
    after their first retrieval, and `on_shutdown` once from `aclose()`.

    Policy: an add-on never breaks the server. A hook that raises during serving
    (`on_publish`, `on_delete`, `on_shutdown`) is logged with its traceback on the
    `longpoll` logger and serving goes on. Only `on_attach` and `on_start` may stop
    the server, by failing `start()`: an add-on that cannot load its events should
    not serve without them.

    Hooks must not block the event loop: hand file, database or network I/O to a
    thread or a task (as `FilePersistor` does) and return at once.
    """

    def on_attach(self, options: Options) -> None:
        """Called first by `start()` with the manager's options, before `on_start`.

        An add-on that stores events can use the buffer size and TTL to drop what
        the manager would not keep anyway.
        """

    def on_start(self) -> Iterable[Event] | AsyncIterable[Event]:
        """Return the events to load into the buffers before serving, oldest first.

        Events must come in chronological order: one older than the event before
        it makes `start()` raise `ValueError` naming it. Events already past the TTL
        are skipped. Timestamps of new events continue after the newest one loaded.
        Return an async iterable to read them without blocking the loop.
        """
        return ()

    def on_publish(self, event: Event) -> Awaitable[None] | None:
        """Called after `event` is stored and waiting subscribers were woken.

        Return None (the usual case) and the publish completes at once. Return an
        awaitable to make the publish wait for it: the manager acknowledges the
        event (returns from `publish()`, answers the HTTP request) only once it
        completes. That is how `FilePersistor(fsync=True)` acknowledges an event
        only after it is on disk. If the awaitable raises, the error is logged and
        the publish raises `PersistenceFailed`: the event is then buffered and may have reached
        subscribers, but it is not acknowledged to its publisher.
        """
        return None

    def on_delete(self, events: Sequence[Event]) -> None:
        """Called when `events` were removed after their first retrieval.

        Only with `Options.delete_event_after_first_retrieval`. An event handed to
        several subscribers at once may be reported more than once.
        """

    async def on_shutdown(self) -> None:
        """Called once when the manager shuts down, after waiters were answered.

        The place to flush and close: the manager waits for it.
        """
