"""filepersist: a guestbook whose entries outlive the server, kept by `FilePersistor`.

Entries published from the page go to the category `guestbook`; `FilePersistor`
appends each event to a file (golongpoll's line format) and loads them back when
the example starts again, ids and timestamps included. With `fsync=True` a publish
is acknowledged only once its event is on disk, so even `kill -9` loses nothing
the page was told is saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

from examples._serve import page
from longpoll import (
    BrowserClientHandler,
    FilePersistor,
    LongpollManager,
    Options,
    PublishHandler,
    SubscribeHandler,
)

DEFAULT_PORT = 8104
DEFAULT_FILE = "filepersist-events.jsonl"
PAGE = Path(__file__).with_name("page.html")


def new_manager(path: str) -> LongpollManager:
    """A manager whose events are kept in `path` (500 per category; compacted on start)."""
    persistor = FilePersistor(path, fsync=True, compact=True)
    return LongpollManager(Options(max_event_buffer_size=500, addon=persistor))


def make_app(manager: LongpollManager) -> Starlette:
    """The guestbook page at `/` and the endpoints."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager:  # loads the file on start, writes the rest on shutdown
            yield

    return Starlette(
        routes=[
            Route("/", page(PAGE)),
            Route("/events", SubscribeHandler(manager)),
            Route("/publish", PublishHandler(manager)),
            Route("/longpoll.js", BrowserClientHandler()),
        ],
        lifespan=lifespan,
    )
