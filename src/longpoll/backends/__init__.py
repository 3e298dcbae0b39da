"""Storage backends: where events are kept and how their order is assigned.

`RedisBackend` needs the `redis` extra (`pip install 'longpoll[redis]'`); it is
imported only when first used.
"""

from typing import TYPE_CHECKING, Any

from longpoll.backends.base import (
    Backend,
    BackendStats,
    CategoryStats,
    ReadResult,
    Repeated,
    Stored,
)
from longpoll.backends.memory import MemoryBackend

if TYPE_CHECKING:
    from longpoll.backends.redis import RedisBackend

__all__ = [
    "Backend",
    "BackendStats",
    "CategoryStats",
    "MemoryBackend",
    "ReadResult",
    "RedisBackend",
    "Repeated",
    "Stored",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        from longpoll.backends.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
