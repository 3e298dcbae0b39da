"""microchat: chat rooms with display names and no login, live in every browser."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette

from examples._serve import page_app
from longpoll import (
    LongpollManager,
    Options,
)

DEFAULT_PORT = 8105
PAGE = Path(__file__).with_name("page.html")


def make_app(manager: LongpollManager) -> Starlette:
    """The chat page at `/`, the long-polling endpoints and the browser client.

    Each room is a category, `room:<name>`; a message is `{"name": ..., "text": ...}`.
    The server keeps the last 100 messages of each room for an hour.
    """
    return page_app(PAGE, manager)


def new_manager() -> LongpollManager:
    """A manager keeping 100 messages per room, for an hour."""
    return LongpollManager(Options(max_event_buffer_size=100, event_ttl_seconds=3600))
