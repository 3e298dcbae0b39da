"""Events: what is published, buffered and sent to subscribers."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from longpoll.errors import InvalidRequest

MAX_CATEGORY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One published event.

    `timestamp` is in milliseconds since the epoch and `id` a random UUID4, as on the
    wire. `sequence` orders events of one manager (or one Redis history) across all
    categories; it is not sent to clients. `json` holds the event encoded once, at
    publish, and is what every response is built from.
    """

    timestamp: int
    category: str
    data: Any
    id: uuid.UUID
    sequence: int = field(repr=False)
    json: bytes = field(repr=False, compare=False)

    @classmethod
    def create(
        cls,
        *,
        timestamp: int,
        category: str,
        data: Any,
        data_json: bytes,
        sequence: int,
        event_id: uuid.UUID | None = None,
    ) -> Event:
        """Build an event around data that `encode_data` already encoded."""
        event_id = event_id if event_id is not None else uuid.uuid4()
        encoded = b'{"timestamp":%d,"category":%b,"data":%b,"id":"%b"}' % (
            timestamp,
            orjson.dumps(category),
            data_json,
            str(event_id).encode("ascii"),
        )
        return cls(timestamp, category, data, event_id, sequence, encoded)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object clients receive."""
        return {
            "timestamp": self.timestamp,
            "category": self.category,
            "data": self.data,
            "id": str(self.id),
        }


def check_category(category: object, name: str = "category") -> str:
    """Return `category` if it is a valid category name, else raise `InvalidRequest`."""
    if not isinstance(category, str):
        raise InvalidRequest(f"{name} must be a string")
    if not category:
        raise InvalidRequest(f"{name} must not be empty")
    try:
        size = len(category.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(f"{name} must be valid UTF-8") from None
    if size > MAX_CATEGORY_BYTES:
        raise InvalidRequest(f"{name} must be at most {MAX_CATEGORY_BYTES} bytes of UTF-8")
    return category


def encode_data(data: Any) -> bytes:
    """Encode event data to JSON, raising `InvalidRequest` for None or unencodable data."""
    if data is None:
        raise InvalidRequest("data must not be null")
    try:
        encoded = orjson.dumps(data)
    except TypeError as exc:
        raise InvalidRequest(f"data is not JSON-serialisable: {exc}") from None
    # orjson writes NaN and infinities as null; JSON has no such numbers, so refuse them.
    if b"null" in encoded and _has_non_finite_float(data):
        raise InvalidRequest("data must not contain NaN or infinite numbers")
    return encoded


def _has_non_finite_float(data: Any) -> bool:
    if isinstance(data, float):
        return not math.isfinite(data)
    if isinstance(data, dict):
        return any(_has_non_finite_float(value) for value in data.values())
    if isinstance(data, list | tuple):
        return any(_has_non_finite_float(item) for item in data)
    return False
