"""filepersist: a guestbook whose entries outlive the server, kept by `FilePersistor`.

Entries published from the page go to the category `guestbook`; `FilePersistor`
appends each event to a file (golongpoll's line format) and loads them back when
the example starts again, ids and timestamps included. With `fsync=True` a publish
is acknowledged only once its event is on disk, so even `kill -9` loses nothing
the page was told is saved.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette

from examples._serve import page_app
from longpoll import (
    FilePersistor,
    LongpollManager,
    Options,
)

DEFAULT_PORT = 8104
DEFAULT_FILE = "filepersist-events.jsonl"
PAGE = Path(__file__).with_name("page.html")


def new_manager(path: str) -> LongpollManager:
    """A manager whose events are kept in `path` (500 per category; compacted on start)."""
    persistor = FilePersistor(path, fsync=True, compact=True)
    return LongpollManager(Options(max_event_buffer_size=500), addon=persistor)


def make_app(manager: LongpollManager) -> Starlette:
    """The guestbook page at `/` and the endpoints."""
    return page_app(PAGE, manager)
