"""Storage backends: where events are kept and how their order is assigned."""

from longpoll.backends.base import Backend, BackendStats, ReadResult
from longpoll.backends.memory import MemoryBackend

__all__ = ["Backend", "BackendStats", "MemoryBackend", "ReadResult"]
