"""ASGI app factories for servers other than `longpoll serve` (e.g. granian ``--factory``)."""

from __future__ import annotations

import gc

from longpoll import LongpollApp, LongpollManager, Options


def memory_app() -> LongpollApp:
    """The app `longpoll serve` runs (memory backend, default options), with its gc settings."""
    app = LongpollApp(LongpollManager(Options()))
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return app
