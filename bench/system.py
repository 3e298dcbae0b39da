"""Per-process set-up for the load generator: descriptors, CPU pinning, event loop."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from longpoll.server import raise_file_limit

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FdLimit:
    """The descriptor soft limit reached and whether it covers `wanted`."""

    soft: int
    hard: int
    wanted: int

    @property
    def enough(self) -> bool:
        """True when `wanted` descriptors fit under the soft limit."""
        return self.soft >= self.wanted

    def note(self) -> str:
        """A one-line explanation when the limit is too low, else ''."""
        if self.enough:
            return ""
        return (
            f"file-descriptor limit {self.soft} (hard {self.hard}) is below the "
            f"{self.wanted} this process needs: raise it (ulimit -Hn) or use more --procs"
        )


def raise_fd_limit(wanted: int) -> FdLimit:
    """Raise RLIMIT_NOFILE's soft limit as far as the hard limit allows."""
    soft = raise_file_limit(wanted)
    return FdLimit(soft=soft, hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1], wanted=wanted)


def pin(cores: tuple[int, ...] | None) -> None:
    """Restrict this process to `cores` (no-op when None)."""
    if cores:
        os.sched_setaffinity(0, cores)


def parse_cores(text: str) -> tuple[int, ...]:
    """Parse '1', '1,2' or '2-3' into a tuple of core numbers."""
    cores: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if sep:
            cores.extend(range(int(first), int(last) + 1))
        else:
            cores.append(int(first))
    available = os.sched_getaffinity(0)
    unknown = [c for c in cores if c not in available]
    if not cores or unknown:
        raise ValueError(f"--pin {text!r}: cores {unknown or text} not available")
    return tuple(cores)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory when installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop if available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (or its reaped children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime
