"""The add-on hooks a manager calls on start, publish and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from longpoll.event import Event


class AddOn:
    """Base class of add-ons: every hook does nothing until overridden.

    The manager calls the hooks on its event loop. `on_publish` must return quickly
    (hand slow work such as file or network I/O to a thread or a task). A hook that
    raises is logged on the `longpoll` logger and serving goes on.
    """

    def on_start(self) -> Iterable[Event] | AsyncIterable[Event]:
        """Return events to load into the buffers before serving, oldest first."""
        return ()

    def on_publish(self, event: Event) -> None:
        """Called after `event` is stored and subscribers were woken."""

    async def on_shutdown(self) -> None:
        """Called once when the manager shuts down, after waiters were answered."""
