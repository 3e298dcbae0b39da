"""Limits per client address: how fast one may publish, how many of its subscribes may wait.

A client is its IP address as the server sees it: behind a proxy every client
has the proxy's, so set these limits on the proxy there instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from longpoll._api import HttpError

_FORGET_AT = 10_000  # idle publishers remembered before they are forgotten


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What one client address may do; None leaves a limit out.

    Every field is checked on creation; a bad value raises `ValueError` naming it.
    """

    publish_per_second: float | None = None
    """Publishes one client may make per second, on average (429 above it)."""
    publish_burst: int = 20
    """Publishes one client may make at once before `publish_per_second` applies."""
    max_waiting: int | None = None
    """Subscribe requests of one client that may wait at once (429 above it)."""

    def __post_init__(self) -> None:
        rate = self.publish_per_second
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf
        ):
            raise ValueError(f"publish_per_second must be a positive number, not {rate!r}")
        for name in ("publish_burst", "max_waiting"):
            value = getattr(self, name)
            if value is None and name == "max_waiting":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")

    @property
    def active(self) -> bool:
        """True if any limit is set."""
        return self.publish_per_second is not None or self.max_waiting is not None


class ClientCounts:
    """Applies `ClientLimits`: a token bucket per publishing client, a count of the
    waiting subscribes per subscribing client. Memory stays bounded: a client is
    forgotten once it waits for nothing and its bucket is full again."""

    def __init__(self, limits: ClientLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # host: (tokens, when)
        self._waiting: dict[str, int] = {}

    def check_publish(self, host: str | None) -> None:
        """Take one publish from `host`'s allowance; raise the 429 error if none is left."""
        rate = self.limits.publish_per_second
        if rate is None or host is None:
            return
        burst = self.limits.publish_burst
        now = self._clock()
        tokens, when = self._buckets.get(host, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate)
        if tokens < 1:
            retry = max(1, math.ceil((1 - tokens) / rate))
            raise HttpError(
                429,
                f"too many publishes: at most {rate:g} per second from one client",
                ((b"retry-after", b"%d" % retry),),
            )
        if len(self._buckets) >= _FORGET_AT and host not in self._buckets:
            self._forget_idle(now)
            if len(self._buckets) >= _FORGET_AT:
                self._buckets.clear()  # that many active clients: start every one afresh
        self._buckets[host] = (tokens - 1, now)

    def begin_wait(self, host: str | None) -> None:
        """Count a subscribe of `host` that waits; raise the 429 error if too many do."""
        maximum = self.limits.max_waiting
        if maximum is None or host is None:
            return
        count = self._waiting.get(host, 0)
        if count >= maximum:
            raise HttpError(
                429,
                f"too many waiting subscribes: at most {maximum} from one client",
                ((b"retry-after", b"1"),),
            )
        self._waiting[host] = count + 1

    def end_wait(self, host: str | None) -> None:
        """Stop counting a subscribe of `host` counted by `begin_wait`."""
        if self.limits.max_waiting is None or host is None:
            return
        count = self._waiting.get(host, 0) - 1
        if count > 0:
            self._waiting[host] = count
        else:
            self._waiting.pop(host, None)

    def waiting(self, host: str) -> int:
        """Subscribes of `host` counted as waiting."""
        return self._waiting.get(host, 0)

    @property
    def clients(self) -> int:
        """Client addresses remembered now (publishing or waiting)."""
        return len(self._buckets) + len(self._waiting)

    def _forget_idle(self, now: float) -> None:
        rate = self.limits.publish_per_second
        assert rate is not None
        burst = self.limits.publish_burst
        self._buckets = {
            host: (tokens, when)
            for host, (tokens, when) in self._buckets.items()
            if tokens + (now - when) * rate < burst
        }
