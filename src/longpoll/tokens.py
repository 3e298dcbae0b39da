"""Subscribe tokens: signed JWTs (HS256) naming the categories they grant.

A token's claims are `categories` (exact names, or `prefix*` patterns that grant
every category starting with `prefix`), `exp` (expiry, epoch seconds) and `iat`.
Mint one with `issue()` or `longpoll token`; `longpoll serve --subscribe-secret`
(or `AccessPolicy(subscribe_secret=...)`) accepts it as `Authorization: Bearer`
or as `?token=` (browsers' EventSource cannot set headers).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import jwt

from longpoll.event import check_category

MIN_SECRET_BYTES = 32
"""HS256 secrets shorter than this are refused: they can be guessed offline."""
_ALGORITHM = "HS256"
_CACHE_SIZE = 10_000
_CACHED_TOKEN_CHARS = 1024


class TokenError(Exception):
    """A token that is missing, malformed, forged or expired."""


class Grant:
    """The categories a verified token grants, until it expires."""

    __slots__ = ("_exact", "_prefixes", "expires")

    def __init__(self, patterns: Iterable[str], expires: float) -> None:
        self._exact: set[str] = set()
        prefixes = []
        for pattern in patterns:
            if pattern.endswith("*"):
                prefixes.append(pattern[:-1])
            else:
                self._exact.add(pattern)
        self._prefixes = tuple(prefixes)
        self.expires = expires

    def allows(self, category: str) -> bool:
        """True if the token grants `category`."""
        return category in self._exact or category.startswith(self._prefixes)


def check_secret(secret: str | bytes, name: str = "secret") -> bytes:
    """`secret` as bytes; `ValueError` naming `name` if it is too short to be safe."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{name} must be at least {MIN_SECRET_BYTES} bytes long; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key


def issue(
    secret: str | bytes,
    categories: Iterable[str],
    ttl_seconds: float = 3600,
    *,
    now: float | None = None,
) -> str:
    """A subscribe token for `categories` (names or `prefix*` patterns), valid for
    `ttl_seconds` from `now` (default: the current time)."""
    key = check_secret(secret)
    names = list(categories)
    if not names:
        raise ValueError("a token must grant at least one category")
    for name in names:
        check_category(name.removesuffix("*") or "*", "token category")
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds!r}")
    issued = time.time() if now is None else now
    claims = {"categories": names, "iat": int(issued), "exp": int(issued + ttl_seconds)}
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


class TokenVerifier:
    """Checks subscribe tokens signed with one secret; remembers those it verified.

    Verifying a signature costs more than answering a poll, and a subscriber
    sends the same token with every poll: a bounded cache keeps that cost away.
    """

    def __init__(self, secret: str | bytes, name: str = "secret") -> None:
        self._key = check_secret(secret, name)
        self._verified: dict[str, Grant] = {}

    def verify(self, token: str, now: float | None = None) -> Grant:
        """The grant of `token`; raises `TokenError` if it is forged, malformed or expired."""
        now = time.time() if now is None else now
        grant = self._verified.get(token)
        if grant is None:
            grant = self._decode(token)
            if len(token) <= _CACHED_TOKEN_CHARS:
                if len(self._verified) >= _CACHE_SIZE:
                    self._verified.clear()
                self._verified[token] = grant
        if grant.expires <= now:
            raise TokenError("token has expired")
        return grant

    def _decode(self, token: str) -> Grant:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                options={"require": ["exp"], "verify_exp": False},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        categories = claims.get("categories")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise TokenError("invalid token: its categories claim must be a list of strings")
        expires = claims["exp"]
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise TokenError("invalid token: exp must be a number")
        return Grant(categories, float(expires))
