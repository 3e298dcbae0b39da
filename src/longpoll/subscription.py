"""What a subscriber asks for, and how a query string becomes one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

from longpoll.errors import InvalidRequest
from longpoll.event import check_category, parse_uuid

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Subscription:
    """A request for the events of one or more categories.

    `since_time` (epoch ms) asks for buffered events published after it; None means
    only events published from now on. `last_id` names the last event the client
    saw at `since_time`, so that events sharing its millisecond are not sent twice.
    A negative `since_time` asks for everything buffered.
    """

    categories: tuple[str, ...]
    timeout_seconds: int
    since_time: int | None = None
    last_id: uuid.UUID | None = None

    def check(self, max_timeout_seconds: int, max_categories: int) -> None:
        """Raise `InvalidRequest` naming the first bad field, in wire-protocol order."""
        _check_timeout(self.timeout_seconds, max_timeout_seconds)
        _check_categories(self.categories, max_categories)
        check_since_time(self.since_time)
        _check_last_id(self.last_id, self.since_time)


def parse_subscription(
    query_string: bytes, max_timeout_seconds: int, max_categories: int, stream: bool = False
) -> Subscription:
    """Parse and check a subscribe query string, raising `InvalidRequest` when it is bad.

    Empty `since_time=` and `last_id=` count as absent, as golongpoll's browser
    client sends `last_id=` on its first poll. A `stream` (Server-Sent Events)
    needs no `timeout`: it ends when the client or the server ends it.
    """
    categories: list[str] = []
    timeout_text = since_text = last_id_text = None
    for key, value in query_pairs(query_string.decode("utf-8", "surrogateescape")):
        if key == "category":
            categories.append(value)
        elif key == "timeout":
            timeout_text = value if timeout_text is None else timeout_text
        elif key == "since_time":
            since_text = value if since_text is None else since_text
        elif key == "last_id":
            last_id_text = value if last_id_text is None else last_id_text

    if not timeout_text:
        if not stream:
            raise InvalidRequest("timeout is required")
        timeout_text = str(max_timeout_seconds)
    if not _is_integer(timeout_text):
        raise InvalidRequest("timeout must be a whole number of seconds")
    timeout = _to_int(timeout_text)
    _check_timeout(timeout, max_timeout_seconds)
    _check_categories(categories, max_categories)

    since_time: int | None = None
    if since_text:
        if not _is_integer(since_text):
            raise InvalidRequest("since_time must be an integer of epoch milliseconds")
        since_time = _to_int(since_text)
        check_since_time(since_time)

    last_id: uuid.UUID | None = None
    if last_id_text:
        if since_time is None:
            raise InvalidRequest("last_id needs since_time")
        try:
            last_id = parse_uuid(last_id_text)
        except ValueError:
            raise InvalidRequest("last_id must be a UUID") from None
    return Subscription(tuple(dict.fromkeys(categories)), timeout, since_time, last_id)


def _is_integer(text: str) -> bool:
    """True for ASCII digits with an optional leading minus sign."""
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def _to_int(text: str) -> int:
    """The integer `text` (digits, maybe a minus sign), far-out values clamped.

    Python refuses to convert strings of over 4,300 digits; any value with more
    than 20 characters is out of every range checked here anyway.
    """
    if len(text) <= 20:
        return int(text)
    return -(2**64) if text.startswith("-") else 2**64


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The key/value pairs of a query string, unquoted, blank values kept."""
    if "%" in query or "+" in query:
        # Undecodable bytes survive as surrogates so that the category check reports
        # them in its turn, after the timeout check.
        return parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="surrogateescape")
    # Nothing to unquote (the usual case): the same pairs, several times faster.
    pairs = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def _check_timeout(timeout: object, maximum: int) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise InvalidRequest("timeout must be a whole number of seconds")
    if not 1 <= timeout <= maximum:
        raise InvalidRequest(f"timeout must be between 1 and {maximum} seconds")


def _check_categories(categories: tuple[str, ...] | list[str], maximum: int) -> None:
    if isinstance(categories, str):
        raise InvalidRequest(
            f"categories must be a tuple of names, not the string {categories[:50]!r}: "
            f"write ({categories[:50]!r},) for one category"
        )
    if not categories:
        raise InvalidRequest("category is required")
    if len(categories) > maximum:
        raise InvalidRequest(f"category may be given at most {maximum} times")
    for category in categories:
        check_category(category)


def check_since_time(since_time: object) -> None:
    """Raise `InvalidRequest` unless `since_time` is None or a signed 64-bit integer."""
    if since_time is None:
        return
    if isinstance(since_time, bool) or not isinstance(since_time, int):
        raise InvalidRequest("since_time must be an integer of epoch milliseconds")
    if not _INT64_MIN <= since_time <= _INT64_MAX:
        raise InvalidRequest("since_time must fit in a signed 64-bit integer")


def _check_last_id(last_id: object, since_time: int | None) -> None:
    if last_id is None:
        return
    if since_time is None:
        raise InvalidRequest("last_id needs since_time")
    if not isinstance(last_id, uuid.UUID):
        raise InvalidRequest("last_id must be a UUID")
