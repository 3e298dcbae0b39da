"""The tokens a server with access control wants, and where the harness gets them.

`longpoll serve` reads a publish token and a subscribe secret from the environment
(`LONGPOLL_PUBLISH_TOKEN`, `LONGPOLL_SUBSCRIBE_SECRET`). The generator then sends the
publish token as `Authorization: Bearer` with every publish, and with every subscribe
a token (JWT) signed with the secret that grants the run's category, as
`Authorization: Bearer` too (the server caches the tokens it verified). A request
refused with 401 is an error like any other.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

PUBLISH_TOKEN_ENV = "LONGPOLL_PUBLISH_TOKEN"
SUBSCRIBE_SECRET_ENV = "LONGPOLL_SUBSCRIBE_SECRET"
OPERATIONS_TOKEN_ENV = "LONGPOLL_OPERATIONS_TOKEN"
ACCESS_ENV = (PUBLISH_TOKEN_ENV, SUBSCRIBE_SECRET_ENV, OPERATIONS_TOKEN_ENV)
SUBSCRIBE_TOKEN_TTL_S = 24 * 3600  # longer than any run
REFUSED = "HTTP 401"  # how the generators count a refused request


@dataclass(frozen=True, slots=True)
class Credentials:
    """A server's access control as its clients see it: `publish_token` goes with every
    publish; every subscribe sends a token signed with `subscribe_secret`. None: not set."""

    publish_token: str | None = dataclasses.field(default=None, repr=False)
    subscribe_secret: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def fresh(cls) -> Credentials:
        """A random publish token and subscribe secret (32 random bytes each)."""
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        """What `longpoll serve` would read from `env` (empty values count as unset)."""
        return cls(env.get(PUBLISH_TOKEN_ENV) or None, env.get(SUBSCRIBE_SECRET_ENV) or None)

    def env(self) -> dict[str, str]:
        """The environment variables that give `longpoll serve` this access control."""
        pairs = (
            (PUBLISH_TOKEN_ENV, self.publish_token),
            (SUBSCRIBE_SECRET_ENV, self.subscribe_secret),
        )
        return {name: value for name, value in pairs if value is not None}

    def shown(self) -> list[str]:
        """`env()` as command-line assignments, the values left out (NAME=...)."""
        return [f"{name}=..." for name in self.env()]

    def subscribe_token(self, category: str) -> str | None:
        """A subscribe token granting `category`, or None without a subscribe secret."""
        if self.subscribe_secret is None:
            return None
        from longpoll.tokens import issue  # only runs with a secret need longpoll itself

        return issue(self.subscribe_secret, [category], ttl_seconds=SUBSCRIBE_TOKEN_TTL_S)

    def note(self) -> str:
        """What the generator sends, in one line (no secrets)."""
        sent = []
        if self.publish_token is not None:
            sent.append(f"the publish token (${PUBLISH_TOKEN_ENV}) with every publish")
        if self.subscribe_secret is not None:
            sent.append(f"a token signed with ${SUBSCRIBE_SECRET_ENV} with every subscribe")
        return "tokens: " + (" and ".join(sent) if sent else "none sent")


NO_CREDENTIALS = Credentials()


def refusals(result: object) -> int:
    """Requests refused with 401 in a result (a report, or its JSON): in each of its parts,
    the outermost error counts by kind (`errors`; those of a fan-out size pool its rounds)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    if isinstance(result, dict):
        errors = result.get("errors")
        if isinstance(errors, dict):
            return sum(n for kind, n in errors.items() if REFUSED in kind and isinstance(n, int))
        return sum(refusals(value) for value in result.values())
    if isinstance(result, list | tuple):
        return sum(refusals(value) for value in result)
    return 0


def refused(result: object) -> str:
    """An error line when `result` holds requests refused with 401, else ''."""
    count = refusals(result)
    if not count:
        return ""
    return (
        f"error: the server refused {count} request(s) with {REFUSED}: "
        "a token was missing or not the one it wants"
    )
