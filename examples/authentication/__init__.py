"""authentication: the long-polling handlers behind ASGI middleware that checks credentials.

The same manager is reachable through two doors:

- `/basic/events` and `/basic/publish` need HTTP basic authentication; without
  valid credentials they answer 401 with a `WWW-Authenticate` challenge;
- `/token/events` and `/token/publish` need an `X-Auth-Token` header; without a
  valid token they answer 403.

A refused request never reaches the handler, so nothing is published or read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.routing import Route

from examples._serve import page
from longpoll import BrowserClientHandler, LongpollManager, PublishHandler, SubscribeHandler

DEFAULT_PORT = 8102
PAGE = Path(__file__).with_name("page.html")
USERS = {"alice": "wonderland"}  # the demo's only user and password
TOKENS = frozenset({"let-me-in"})  # the demo's only token
TOKEN_HEADER = "X-Auth-Token"
CATEGORY = "notes"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def refuse(send: Send, status: int, message: str, headers: Mapping[str, str]) -> None:
    """Answer with `status` and `{"error": message}`, as the long-polling handlers do."""
    body = orjson.dumps({"error": message})
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-cache, no-store, must-revalidate"),
    ]
    raw += [(key.lower().encode(), value.encode()) for key, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: str) -> str | None:
    """The request header `name` (lower case), or None."""
    wanted = name.lower().encode()
    for key, value in scope["headers"]:
        if key == wanted:
            return str(value.decode("latin-1"))
    return None


class BasicAuth:
    """ASGI middleware: pass requests with valid HTTP basic credentials to `app`."""

    def __init__(self, app: ASGIApp, users: Mapping[str, str], realm: str = "longpoll") -> None:
        self.app = app
        self.users = dict(users)
        self.realm = realm

    def allowed(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        expected = self.users.get(username)
        return expected is not None and hmac.compare_digest(password, expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed(header(scope, "authorization")):
            # Browsers answer a `Basic` challenge to a script's request with their own
            # login dialog (and hold the request until it closes). A page that asks for
            # credentials itself marks its requests with `X-Requested-With`; they get
            # the same challenge under a scheme name browsers leave to the page.
            scheme = "xBasic" if header(scope, "x-requested-with") else "Basic"
            challenge = {"WWW-Authenticate": f'{scheme} realm="{self.realm}", charset="UTF-8"'}
            await refuse(send, 401, "valid username and password needed", challenge)
            return
        await self.app(scope, receive, send)


class TokenAuth:
    """ASGI middleware: pass requests whose `header_name` holds a known token to `app`."""

    def __init__(self, app: ASGIApp, tokens: frozenset[str], header_name: str) -> None:
        self.app = app
        self.tokens = tokens
        self.header_name = header_name

    def allowed(self, token: str | None) -> bool:
        # Compare against every token, so the time taken does not tell which is close.
        matches = [hmac.compare_digest(token or "", known) for known in self.tokens]
        return token is not None and any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed(header(scope, self.header_name)):
            await refuse(send, 403, f"a valid {self.header_name} header is needed", {})
            return
        await self.app(scope, receive, send)


def make_app(manager: LongpollManager) -> Starlette:
    """The page at `/`, the browser client, and both protected pairs of handlers."""

    def basic(handler: ASGIApp) -> ASGIApp:
        return BasicAuth(handler, USERS)

    def token(handler: ASGIApp) -> ASGIApp:
        return TokenAuth(handler, TOKENS, TOKEN_HEADER)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager:
            yield

    subscribe, publish = SubscribeHandler(manager), PublishHandler(manager)
    return Starlette(
        routes=[
            Route("/", page(PAGE)),
            Route("/longpoll.js", BrowserClientHandler()),
            Route("/basic/events", basic(subscribe)),
            Route("/basic/publish", basic(publish)),
            Route("/token/events", token(subscribe)),
            Route("/token/publish", token(publish)),
        ],
        lifespan=lifespan,
    )
