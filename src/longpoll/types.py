"""The ASGI types longpoll's apps and handlers are written against.

They follow the ASGI specification: a `Scope` per connection, `Receive` and `Send`
callables that carry `Message`s, and `ASGIApp`, what every app and handler is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
"""What the ASGI server tells of a connection (type, method, path, headers, ...)."""
Message = MutableMapping[str, Any]
"""One ASGI event, received or sent (`http.request`, `http.response.start`, ...)."""
Receive = Callable[[], Awaitable[Message]]
"""Awaits the next message from the client."""
Send = Callable[[Message], Awaitable[None]]
"""Sends a message to the client."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI application."""

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]
