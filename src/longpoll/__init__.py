"""Web publish/subscribe over HTTP long polling, wire-compatible with golongpoll."""

from longpoll.access import AccessDenied, AccessPolicy, Action, Authorize, Request
from longpoll.addons.base import AddOn
from longpoll.addons.file import FilePersistor
from longpoll.asgi import LongpollApp, PublishHandler, SubscribeHandler
from longpoll.backends.base import Backend
from longpoll.backends.memory import MemoryBackend
from longpoll.browser import BrowserClientHandler
from longpoll.errors import (
    BackendUnavailable,
    ClientError,
    ConnectionFailed,
    InvalidRequest,
    LongpollError,
    ManagerClosed,
    PersistenceFailed,
    ProtocolError,
    PublishUnconfirmed,
    ServerError,
    StoreFull,
)
from longpoll.event import Event
from longpoll.manager import LongpollManager, ManagerStats
from longpoll.options import Options
from longpoll.subscription import Subscription
from longpoll.waiting import Batch

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AccessPolicy",
    "Action",
    "AddOn",
    "Authorize",
    "Backend",
    "BackendUnavailable",
    "Batch",
    "BrowserClientHandler",
    "ClientError",
    "ConnectionFailed",
    "Event",
    "FilePersistor",
    "InvalidRequest",
    "LongpollApp",
    "LongpollError",
    "LongpollManager",
    "ManagerClosed",
    "ManagerStats",
    "MemoryBackend",
    "Options",
    "PersistenceFailed",
    "ProtocolError",
    "PublishHandler",
    "PublishUnconfirmed",
    "Request",
    "ServerError",
    "StoreFull",
    "SubscribeHandler",
    "Subscription",
    "__version__",
]
