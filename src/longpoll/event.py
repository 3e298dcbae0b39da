"""Events: what is published, buffered and sent to subscribers."""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import FrozenInstanceError
from typing import Any, ClassVar

import orjson

from longpoll.errors import InvalidRequest

MAX_CATEGORY_BYTES = 1024


_UNDECODED: Any = object()


class Event:
    """One published event; immutable.

    `timestamp` is in milliseconds since the epoch and `id` a random UUID4, as on the
    wire. `sequence` orders events of one manager (or one Redis history) across all
    categories; it is not sent to clients. `json` holds the event encoded once, at
    publish, and is what every response is built from.

    Events read back from a store (`Event.stored`) decode `data` and `id` from
    `json` only when asked for them: a server answering over HTTP never needs to.
    """

    __slots__ = ("_data", "_id", "category", "json", "sequence", "timestamp")
    __match_args__ = ("timestamp", "category", "data", "id", "sequence", "json")

    timestamp: int
    category: str
    sequence: int
    json: bytes
    _data: Any
    _id: uuid.UUID

    def __init__(
        self,
        timestamp: int,
        category: str,
        data: Any,
        id: uuid.UUID,
        sequence: int,
        json: bytes,
    ) -> None:
        _set = object.__setattr__
        _set(self, "timestamp", timestamp)
        _set(self, "category", category)
        _set(self, "_data", data)
        _set(self, "_id", id)
        _set(self, "sequence", sequence)
        _set(self, "json", json)

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
        """Build an event around data that `encode_data` already encoded.

        Without `event_id`, the event gets a random UUID4.
        """
        if event_id is None:
            id_text = _RANDOM_IDS.take()
            made_id: Any = _UNDECODED
        else:
            id_text, made_id = str(event_id).encode("ascii"), event_id
        encoded = b'{"timestamp":%d,"category":%b,"data":%b,"id":"%b"}' % (
            timestamp,
            orjson.dumps(category),
            data_json,
            id_text,
        )
        return cls(timestamp, category, data, made_id, sequence, encoded)

    @classmethod
    def stored(cls, timestamp: int, category: str, sequence: int, json: bytes) -> Event:
        """The event whose wire JSON (as `create` built it) is `json`, decoded lazily."""
        return cls(timestamp, category, _UNDECODED, _UNDECODED, sequence, json)

    @property
    def data(self) -> Any:
        """The published data, as JSON decodes it."""
        if self._data is _UNDECODED:
            self._decode()
        return self._data

    @property
    def id(self) -> uuid.UUID:
        """The event's unique id."""
        if self._id is _UNDECODED:
            object.__setattr__(self, "_id", parse_uuid(self.id_ascii.decode("ascii")))
        return self._id

    @property
    def id_ascii(self) -> bytes:
        """The id as it stands in `json`: 36 ASCII characters."""
        return self.json[-38:-2]

    @property
    def position(self) -> tuple[int, int]:
        """Where the event stands in the order of its store: (timestamp, sequence)."""
        return (self.timestamp, self.sequence)

    def _decode(self) -> None:
        object.__setattr__(self, "_data", orjson.loads(self.json)["data"])

    def with_sequence(self, sequence: int) -> Event:
        """A copy of this event with another `sequence`."""
        return type(self)(self.timestamp, self.category, self._data, self._id, sequence, self.json)

    def _key(self) -> tuple[int, str, Any, uuid.UUID, int]:
        return (self.timestamp, self.category, self.data, self.id, self.sequence)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.timestamp, self.category, self.id, self.sequence))

    def __repr__(self) -> str:
        return (
            f"{type(self).__qualname__}(timestamp={self.timestamp!r}, category={self.category!r}, "
            f"data={self.data!r}, id={self.id!r})"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: events are immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: events are immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through __init__: the default way would assign the slots one by one.
        fields = (self.timestamp, self.category, self.data, self.id, self.sequence, self.json)
        return (type(self), fields)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object clients receive."""
        return wire_dict(self.timestamp, self.category, self.data, self.id)


def wire_dict(timestamp: int, category: str, data: Any, event_id: uuid.UUID) -> dict[str, Any]:
    """An event as the JSON object of the wire protocol."""
    return {"timestamp": timestamp, "category": category, "data": data, "id": str(event_id)}


class _RandomIds:
    """Random UUID4 texts, made 256 at a time from 4 KiB of the operating system's
    random bytes: one `hex()` of the whole block is cheaper than 256 integers."""

    __slots__ = ("_ready",)

    # A UUID4's 17th hex digit holds its variant (8, 9, a or b) and two random bits.
    _VARIANT: ClassVar[dict[int, bytes]] = {
        ord(digit): b"89ab"[int(digit, 16) % 4 :][:1] for digit in "0123456789abcdef"
    }

    def __init__(self) -> None:
        self._ready: list[bytes] = []

    def take(self) -> bytes:
        """One random UUID4 as its 36 ASCII characters."""
        ready = self._ready
        if not ready:
            ready = self._ready = self._make()
        return ready.pop()

    @classmethod
    def _make(cls) -> list[bytes]:
        digits = os.urandom(4096).hex().encode("ascii")
        variant = cls._VARIANT
        # The 13th digit is the version, 4: the random digit there is left out.
        return [
            b"%b-%b-4%b-%b%b-%b"
            % (
                digits[at : at + 8],
                digits[at + 8 : at + 12],
                digits[at + 13 : at + 16],
                variant[digits[at + 16]],
                digits[at + 17 : at + 20],
                digits[at + 20 : at + 32],
            )
            for at in range(0, len(digits), 32)
        ]


_RANDOM_IDS = _RandomIds()


def random_event_id() -> uuid.UUID:
    """A random UUID4, as `uuid.uuid4()` makes, at a fraction of its cost.

    The random bytes come from the operating system in batches.
    """
    return parse_uuid(_RANDOM_IDS.take().decode("ascii"))


def parse_uuid(text: str) -> uuid.UUID:
    """`uuid.UUID(text)`, faster for the usual form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`."""
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        digits = text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]
        # isalnum keeps out what int() would also take: signs, spaces, underscores.
        if digits.isascii() and digits.isalnum():
            try:
                return _uuid_of(int(digits, 16))
            except ValueError:
                pass
    return uuid.UUID(text)


def _uuid_of(value: int) -> uuid.UUID:
    """The UUID of a 128-bit integer, without the constructor's checks."""
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
    return made


def check_category(category: object, name: str = "category") -> str:
    """Return `category` if it is a valid category name, else raise `InvalidRequest`."""
    if not isinstance(category, str):
        raise InvalidRequest(f"{name} must be a string")
    if not category:
        raise InvalidRequest(f"{name} must not be empty")
    if category.isascii():
        size = len(category)
    else:
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
