"""LongpollApp under any ASGI server: `uvicorn --factory docs.examples.asgi_app:build_app`."""

from longpoll import LongpollApp, LongpollManager, Options


def build_app() -> LongpollApp:
    """The app `longpoll serve` runs, as a plain ASGI app: its lifespan runs the manager."""
    return LongpollApp(LongpollManager(Options(max_event_buffer_size=100)))
