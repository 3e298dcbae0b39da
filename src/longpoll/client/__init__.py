"""Python clients of the long-polling wire protocol, async and sync, built on httpx.

`AsyncClient` and `Client` share one implementation of the protocol (`_core`);
they differ only in how they wait. They work with any server of the protocol,
golongpoll's included; `stream()` (Server-Sent Events instead of polls) needs a
server that streams, such as longpoll's. Both can present a bearer token
(`token=`, a string or a function that renews it; see `AsyncClient`). Every error
they raise derives from `longpoll.LongpollError`:

    LongpollError
     +-- InvalidRequest (also ValueError)  a bad category, data, since, last_id or token
     +-- ClientError                       a request failed
          +-- ServerError                  the server answered with an error (.status, .message)
          +-- ProtocolError                the answer is not the protocol's JSON or stream
          +-- ConnectionFailed             no answer: unreachable, broken, timed out
"""

from longpoll.client._async import AsyncClient, AsyncEventStream
from longpoll.client._core import (
    AsyncToken,
    FailureHandler,
    Published,
    ReceivedEvent,
    Since,
    Token,
)
from longpoll.client._sync import Client, EventStream
from longpoll.errors import ClientError, ConnectionFailed, ProtocolError, ServerError

__all__ = [
    "AsyncClient",
    "AsyncEventStream",
    "AsyncToken",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "EventStream",
    "FailureHandler",
    "ProtocolError",
    "Published",
    "ReceivedEvent",
    "ServerError",
    "Since",
    "Token",
]
