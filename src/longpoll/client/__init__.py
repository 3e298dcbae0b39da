"""Python clients of the long-polling wire protocol, async and sync, built on httpx.

`AsyncClient` and `Client` share one implementation of the protocol (`_core`);
they differ only in how they wait. They work with any server of the protocol,
golongpoll's included. Every error they raise derives from `longpoll.LongpollError`:

    LongpollError
     +-- InvalidRequest (also ValueError)  a bad category, data, since or last_id
     +-- ClientError                       a request failed
          +-- ServerError                  the server answered with an error (.status, .message)
          +-- ProtocolError                the answer is not the protocol's JSON
          +-- ConnectionFailed             no answer: unreachable, broken, timed out
"""

from longpoll.client._async import AsyncClient, AsyncEventStream
from longpoll.client._core import FailureHandler, Published, ReceivedEvent, Since
from longpoll.client._sync import Client, EventStream
from longpoll.errors import ClientError, ConnectionFailed, ProtocolError, ServerError

__all__ = [
    "AsyncClient",
    "AsyncEventStream",
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
]
