"""Who may subscribe and publish: origins (CORS and CSRF), tokens and a hook of your own.

An `AccessPolicy` is checked before a subscribe reads anything and before a
publish stores anything. Both ways in (`longpoll serve` and the ASGI handlers)
use the same policy; every app has one, and the default one refuses requests
that a page on another origin makes through a visitor's browser.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from longpoll._api import Headers, HttpError, Request, Response
from longpoll.subscription import query_pairs
from longpoll.tokens import TokenError, TokenVerifier, check_secret

Action = Literal["subscribe", "publish"]
"""What a request asks to do."""

Authorize = Callable[[Request, Action, tuple[str, ...]], "bool | Awaitable[bool]"]
"""A hook deciding whether `request` may `action` the categories; sync or async.

It returns True to allow and False to refuse with 403, or raises `AccessDenied`
to refuse with a message (and 401 when credentials are missing or wrong).
"""

__all__ = ["AccessDenied", "AccessPolicy", "Action", "Authorize", "Request"]

_BEARER = ((b"www-authenticate", b"Bearer"),)
_PREFLIGHT_SECONDS = b"600"
_ALLOWED_REQUEST_HEADERS = b"authorization, content-type, last-event-id"
_METHOD = {"subscribe": b"GET", "publish": b"POST"}


class AccessDenied(Exception):
    """Raised by an authorization hook to refuse a request with `message`.

    `status` is 401 when the client sent no credentials or wrong ones (the
    answer then carries `WWW-Authenticate: Bearer`), else 403.
    """

    def __init__(self, message: str = "forbidden", status: Literal[401, 403] = 403) -> None:
        if status not in (401, 403):
            raise ValueError(f"status must be 401 or 403, not {status!r}")
        super().__init__(message)
        self.message = message
        self.status = status


class AccessPolicy:
    """Decides whether a request may subscribe or publish.

    - `cors_origins`: web origins (`https://app.example`) whose pages may subscribe
      and publish from a browser; `"*"` lets every origin subscribe (never publish).
      A request whose `Origin` is neither this server's own (its `Host`) nor listed
      is refused with 403; requests without `Origin` (servers, scripts, our
      clients) are not affected.
    - `publish_token`: a publish must send `Authorization: Bearer <publish_token>`.
    - `subscribe_secret`: a subscribe must send a token signed with this secret
      (`longpoll.tokens.issue`) that grants each category it names, as
      `Authorization: Bearer` or `?token=`.
    - `authorize`: your own hook (see `Authorize`), asked after the checks above.
    - `operations_token`: the endpoints for operators (stats, metrics, health,
      readiness) need `Authorization: Bearer <operations_token>`.
    """

    def __init__(
        self,
        *,
        cors_origins: Iterable[str] = (),
        publish_token: str | None = None,
        subscribe_secret: str | bytes | None = None,
        authorize: Authorize | None = None,
        operations_token: str | None = None,
    ) -> None:
        origins = {_normal_origin(origin) for origin in cors_origins}
        self._any_origin_subscribes = "*" in origins
        self._origins = frozenset(origins - {"*"})
        self._publish_token = None
        if publish_token is not None:
            self._publish_token = check_secret(publish_token, "publish_token")
        self._operations_token = None
        if operations_token is not None:
            self._operations_token = check_secret(operations_token, "operations_token")
        self._verifier = None
        if subscribe_secret is not None:
            self._verifier = TokenVerifier(subscribe_secret, "subscribe_secret")
        self._authorize = authorize
        self.wants_client = authorize is not None
        """True if the hook may look at `Request.client` (the server then fills it)."""

    def check(
        self, request: Request, action: Action, categories: tuple[str, ...]
    ) -> Awaitable[None] | None:
        """Raise `HttpError` (401, 403) if `request` may not `action` `categories`.

        Returns None once allowed, or an awaitable that raises or returns when an
        async hook has decided.
        """
        origin = request.origin
        if origin is not None and not self._origin_allowed(request, origin, action):
            raise HttpError(403, f"requests from origin {_shown(origin)} are not allowed")
        if action == "publish":
            if self._publish_token is not None:
                _check_bearer(request, self._publish_token, "publishing")
        elif self._verifier is not None:
            self._check_subscribe_token(request, categories)
        if self._authorize is None:
            return None
        try:
            decision = self._authorize(request, action, categories)
        except AccessDenied as denied:
            raise _refusal(denied) from None
        if decision is True:
            return None
        if decision is False:
            raise _forbidden(action)
        if not inspect.isawaitable(decision):
            raise TypeError(f"the authorize hook returned {decision!r}, not a bool")
        return self._decided(decision, action)

    def check_operations(self, request: Request) -> None:
        """Raise `HttpError` (401) if `request` may not use the endpoints for operators."""
        if self._operations_token is not None:
            _check_bearer(
                request, self._operations_token, "reading stats, metrics, health and readiness"
            )

    def cors_headers(self, request: Request, action: Action) -> Headers:
        """The CORS headers for the answer to `request`: none unless its origin is listed."""
        if not self._origins and not self._any_origin_subscribes:
            return ()
        origin = request.origin
        if origin is None:
            return ()
        if action == "subscribe" and self._any_origin_subscribes:
            return ((b"access-control-allow-origin", b"*"),)
        if _normal_origin(origin.decode("latin-1")) in self._origins:
            return ((b"access-control-allow-origin", origin), (b"vary", b"origin"))
        return ()

    def preflight(self, request: Request, action: Action) -> Response:
        """The answer to a CORS preflight (`OPTIONS`) for `action`."""
        origin = request.origin
        if origin is None or not self._origin_allowed(request, origin, action):
            shown = "without an origin" if origin is None else f"from origin {_shown(origin)}"
            raise HttpError(403, f"cross-origin requests {shown} are not allowed")
        headers = (
            *self.cors_headers(request, action),
            (b"access-control-allow-methods", _METHOD[action]),
            (b"access-control-allow-headers", _ALLOWED_REQUEST_HEADERS),
            (b"access-control-max-age", _PREFLIGHT_SECONDS),
        )
        return Response(204, b"", headers)

    def _origin_allowed(self, request: Request, origin: bytes, action: Action) -> bool:
        if action == "subscribe" and self._any_origin_subscribes:
            return True
        text = _normal_origin(origin.decode("latin-1"))
        if text in self._origins:
            return True
        # The server's own origin: what the browser was told the host is.
        host = request.header(b"host")
        _, _, netloc = text.partition("://")
        return host is not None and netloc == host.decode("latin-1").lower()

    def _check_subscribe_token(self, request: Request, categories: tuple[str, ...]) -> None:
        assert self._verifier is not None
        token = _bearer(request)
        if token is None:
            token = _query_token(request.query)
        if token is None:
            raise _unauthorized(
                "subscribing needs a token: send Authorization: Bearer <token> or ?token="
            )
        try:
            grant = self._verifier.verify(token)
        except TokenError as exc:
            raise _unauthorized(str(exc)) from None
        for category in categories:
            if not grant.allows(category):
                raise HttpError(403, f"the token does not grant the category {category!r}")

    async def _decided(self, decision: Awaitable[bool], action: Action) -> None:
        try:
            allowed = await decision
        except AccessDenied as denied:
            raise _refusal(denied) from None
        if allowed is not True:
            raise _forbidden(action)


def with_headers(response: Response, extra: Headers) -> Response:
    """`response` with the `extra` headers added."""
    if not extra:
        return response
    return Response(response.status, response.body, (*response.headers, *extra))


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _shown(origin: bytes) -> str:
    return repr(origin.decode("latin-1")[:200])


def _bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case)."""
    value = _bearer_bytes(request)
    return None if value is None else value.decode("latin-1")


def _bearer_bytes(request: Request) -> bytes | None:
    value = request.authorization
    if value is None or value[:7].lower() != b"bearer ":
        return None
    return value[7:].strip() or None


def _query_token(query: bytes) -> str | None:
    if b"token=" not in query:
        return None
    for key, value in query_pairs(query.decode("utf-8", "surrogateescape")):
        if key == "token" and value:
            return value
    return None


def _check_bearer(request: Request, expected: bytes, what: str) -> None:
    value = request.authorization
    if value is not None and value[:7] == b"Bearer " and hmac.compare_digest(value[7:], expected):
        return  # the usual form, checked without taking it apart
    token = _bearer_bytes(request)
    if token is None:
        raise _unauthorized(f"{what} needs a token: send Authorization: Bearer <token>")
    if not hmac.compare_digest(token, expected):
        raise _unauthorized(f"the token for {what} is not valid")


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, message, _BEARER)


def _forbidden(action: Action) -> HttpError:
    return HttpError(403, f"not allowed to {action}")


def _refusal(denied: AccessDenied) -> HttpError:
    return HttpError(denied.status, denied.message, _BEARER if denied.status == 401 else ())
