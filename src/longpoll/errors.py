"""The exception tree of longpoll: every error it raises derives from `LongpollError`."""


class LongpollError(Exception):
    """Base class of every error raised by longpoll."""


class InvalidRequest(LongpollError, ValueError):
    """A publish or subscribe request with a bad argument; nothing was stored or changed."""


class ManagerClosed(LongpollError, RuntimeError):
    """The manager is not running: it was never started, or it is shutting down."""
