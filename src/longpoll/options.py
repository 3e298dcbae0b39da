"""Options of a `LongpollManager`, validated when they are created."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Options:
    """How a manager buffers events and serves subscribers.

    Every field is checked on creation; a bad value raises `ValueError` naming it.
    """

    max_longpoll_timeout_seconds: int = 110
    """Largest `timeout` a subscriber may ask for."""
    max_event_buffer_size: int = 250
    """Events kept per category; the oldest is dropped first."""
    event_ttl_seconds: float | None = None
    """Events older than this are removed; None keeps them until the buffer is full."""
    delete_event_after_first_retrieval: bool = False
    """Remove an event once a subscriber has received it."""
    max_publish_body_bytes: int = 1024 * 1024
    """Largest publish request body accepted over HTTP (413 above it)."""
    max_categories_per_request: int = 16
    """Most categories one subscribe request may name."""
    max_buffered_bytes: int | None = None
    """Event bytes (their JSON) kept in all categories together; past it the oldest
    events, whatever their category, are dropped first. None: no such bound.
    Memory backend only (Redis has `maxmemory`)."""
    max_stored_categories: int | None = None
    """Categories kept at once; a publish to a new one beyond it is refused
    (`StoreFull`, HTTP 507) until some empty out. None: no such bound. Memory
    backend only."""

    def __post_init__(self) -> None:
        check_int("max_longpoll_timeout_seconds", self.max_longpoll_timeout_seconds, 1)
        check_int("max_event_buffer_size", self.max_event_buffer_size, 1)
        check_int("max_publish_body_bytes", self.max_publish_body_bytes, 1)
        check_int("max_categories_per_request", self.max_categories_per_request, 1)
        for name in ("max_buffered_bytes", "max_stored_categories"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        ttl = self.event_ttl_seconds
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf
        ):
            raise ValueError(
                f"event_ttl_seconds must be a positive finite number or None, not {ttl!r}"
            )
        if not isinstance(self.delete_event_after_first_retrieval, bool):
            raise ValueError("delete_event_after_first_retrieval must be a bool")


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise `ValueError` naming `name` unless `value` is an integer of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, not {value!r}")
