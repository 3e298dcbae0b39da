"""Server-Sent Events: the stream a subscriber gets instead of one answer.

A subscribe request that accepts `text/event-stream` gets a response that stays
open. Each event goes down it as

    id: <timestamp>:<event id>
    event: <category>
    data: <the event's JSON, as a long-poll answer carries it>

The `id` is the event's position: a client (a browser's `EventSource` on its own)
that reconnects with it as `Last-Event-ID` resumes exactly after that event, as a
long poll with `since_time` and `last_id` does. A stream that starts without a
position first sends `id: <timestamp>` alone, a safe resume point, so that a
reconnect before the first event loses nothing either. A gap (events dropped
before the client asked for them) is an `event: missed`; a comment line keeps
idle connections open through proxies.

This module only makes bytes and reads requests; `longpoll.server` and
`longpoll.asgi` carry them.
"""

from __future__ import annotations

import dataclasses
import uuid

from longpoll._api import HttpError, Request
from longpoll.errors import InvalidRequest
from longpoll.event import Event, parse_uuid
from longpoll.options import Options
from longpoll.subscription import Subscription, check_since_time, parse_subscription
from longpoll.waiting import Batch

RETRY_MILLISECONDS = 2000
"""How long a browser waits before it reconnects a stream that ended (`retry:`)."""

STREAM_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # no-transform: proxies must not compress or hold the stream back.
    (b"cache-control", b"no-cache, no-store, no-transform"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
)

HEARTBEAT = b": keep-alive\n\n"
OPENING = b"retry: %d\n\n" % RETRY_MILLISECONDS
MISSED = b'event: missed\ndata: {"missed":true}\n\n'

_EVENT_STREAM = b"text/event-stream"
_CACHED = 256


def wants_stream(request: Request) -> bool:
    """True if the request accepts `text/event-stream` (an `EventSource` does)."""
    accept = request.header(b"accept")
    return accept is not None and _EVENT_STREAM in accept.lower()


def subscription_of(request: Request, options: Options, stream: bool) -> Subscription:
    """The subscription a subscribe request asks for, checked against `options`;
    `InvalidRequest` or the 400 error if it is bad.

    A `stream` needs no `timeout`, and resumes from its `Last-Event-ID`, when it
    has one: the header wins over `since_time` and `last_id` in the query, as a
    browser reconnecting sends the query of its first request again.
    """
    subscription = parse_subscription(
        request.query,
        options.max_longpoll_timeout_seconds,
        options.max_categories_per_request,
        stream,
    )
    if not stream:
        return subscription
    value = request.header(b"last-event-id")
    if value is None or not value.strip():
        return subscription
    since_time, last_id = parse_position(value.decode("latin-1").strip())
    return dataclasses.replace(subscription, since_time=since_time, last_id=last_id)


def parse_position(text: str) -> tuple[int, uuid.UUID | None]:
    """The `since_time` and `last_id` of a stream's event id (see the module).

    Raises the 400 error naming `Last-Event-ID` when it is not one.
    """
    timestamp, _, event_id = text.partition(":")
    digits = timestamp.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise HttpError(400, "Last-Event-ID must be an event id this server sent")
    since_time = int(timestamp)
    try:
        check_since_time(since_time)
    except InvalidRequest:
        raise HttpError(400, "Last-Event-ID must be an event id this server sent") from None
    if not event_id:
        return since_time, None
    try:
        return since_time, parse_uuid(event_id)
    except ValueError:
        raise HttpError(400, "Last-Event-ID must be an event id this server sent") from None


class _Frames:
    """Each event's frame, made once for every stream it goes down.

    A fan-out writes the same few events to many streams in a row, so a small
    cache keyed by the event object's identity serves nearly every frame.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Event, bytes]] = {}

    def of(self, event: Event) -> bytes:
        cached = self._cache.get(id(event))
        if cached is not None and cached[0] is event:
            return cached[1]
        frame = _frame(event)
        if len(self._cache) >= _CACHED:
            self._cache.clear()
        self._cache[id(event)] = (event, frame)  # holding the event keeps its id unique
        return frame


def _frame(event: Event) -> bytes:
    category = event.category
    if "\n" in category or "\r" in category:
        kind = b""  # cannot stand in a field: the event keeps the default type, message
    else:
        kind = b"event: %b\n" % category.encode("utf-8")
    return b"id: %d:%b\n%bdata: %b\n\n" % (event.timestamp, event.id_ascii, kind, event.json)


FRAMES = _Frames()


def batch_frames(batch: Batch, announce_position: bool = False) -> bytes:
    """The stream's bytes for `batch`: the gap, then its events.

    With `announce_position`, an empty batch sends its timestamp as the stream's
    position (the first batch of a stream that started without one).
    """
    events = batch.events
    if len(events) == 1 and not batch.missed:
        return FRAMES.of(events[0])
    parts = [MISSED] if batch.missed else []
    if events:
        parts += [FRAMES.of(event) for event in events]
    elif announce_position:
        parts.append(b"id: %d\n\n" % batch.timestamp)
    return b"".join(parts)
