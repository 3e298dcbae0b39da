"""stressor: a page counting the events of a category live, and a CLI publisher to flood it.

The page (`/?category=NAME`, default `stress`) shows how many events arrived, the
rate over the last second, the peak rate and any gap (events dropped by the server
before the page got them). `python -m examples.stressor.publisher` publishes events
with the Python client.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette

from examples._serve import page_app
from longpoll import (
    LongpollManager,
    Options,
)

DEFAULT_PORT = 8106
PAGE = Path(__file__).with_name("page.html")
BUFFER_SIZE = 10_000  # large, so that a page between two polls falls behind rarely


def new_manager() -> LongpollManager:
    """A manager buffering `BUFFER_SIZE` events per category for a minute."""
    return LongpollManager(Options(max_event_buffer_size=BUFFER_SIZE, event_ttl_seconds=60))


def make_app(manager: LongpollManager) -> Starlette:
    """The counting page at `/` and the endpoints."""
    return page_app(PAGE, manager)
