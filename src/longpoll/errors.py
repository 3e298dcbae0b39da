"""The exception tree of longpoll: every error it raises derives from `LongpollError`."""

import uuid


class LongpollError(Exception):
    """Base class of every error raised by longpoll."""


class InvalidRequest(LongpollError, ValueError):
    """A publish or subscribe request with a bad argument; nothing was stored or changed."""


class ManagerClosed(LongpollError, RuntimeError):
    """The manager is not running: it was never started, or it is shutting down."""


class BackendUnavailable(LongpollError):
    """The backend's store (Redis) cannot be reached. Retry later.

    Nothing was stored, except for its subclass `PublishUnconfirmed`.
    """


class PublishUnconfirmed(BackendUnavailable):
    """A publish whose answer from the store (Redis) was lost: the event may have
    been stored. Publish again with the same `event_id`: it is then stored once."""

    def __init__(self, message: str, event_id: uuid.UUID) -> None:
        super().__init__(
            f"{message}; the event may have been stored: publish it again with id {event_id}"
        )
        self.event_id = event_id


class StoreFull(LongpollError):
    """A publish to a new category was refused: the store holds as many categories as
    it may (`Options.max_stored_categories`); nothing was stored. Retry later."""


class PersistenceFailed(LongpollError):
    """An add-on could not make a published event durable, so it was not acknowledged.

    The event is buffered all the same and may have reached subscribers.
    """


class ClientError(LongpollError):
    """A request of the Python client (`longpoll.client`) failed; see the subclasses."""


class ServerError(ClientError):
    """The server answered with an error.

    That is a status other than 2xx, or a JSON `error` key (golongpoll reports a bad
    subscribe request with status 200). `status` is the HTTP status and `message`
    the server's own words.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"server answered {status}: {message}")
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[type["ServerError"], tuple[int, str]]:
        return type(self), (self.status, self.message)


class ProtocolError(ClientError):
    """The server answered, but not in the wire protocol: not the JSON expected."""


class ConnectionFailed(ClientError):
    """The server could not be reached, or the connection failed before its answer."""
