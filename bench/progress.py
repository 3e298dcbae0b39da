"""A progress bar on stderr while a scenario runs (rich; nothing when not a terminal).

The coordinator is idle while the workers measure, so the bar costs the generator
nothing worth counting: it is redrawn a few times a second from the coordinator.
`rich` is optional: without it, or with stderr not a terminal, `Bar` does nothing.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

ENABLED = True  # --no-progress turns it off


class Bar:
    """One task on a progress bar; a context manager."""

    def __init__(self, description: str, total: float) -> None:
        self._total = total
        self._progress: Any = None
        self._task: Any = None
        if not ENABLED or not sys.stderr.isatty():
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, amount: float = 1) -> None:
        """Move forward by `amount`."""
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def update(self, completed: float, description: str | None = None) -> None:
        """Set the position (and optionally the description)."""
        if self._progress is not None:
            if description is None:
                self._progress.update(self._task, completed=completed)
            else:
                self._progress.update(self._task, completed=completed, description=description)

    def sleep_until(self, deadline_ns: int, start_ns: int) -> None:
        """Sleep until `deadline_ns` (`time.monotonic_ns()`), showing seconds since `start_ns`."""
        while (left := deadline_ns - time.monotonic_ns()) > 0:
            time.sleep(min(0.25, left / 1e9))
            self.update(min(self._total, max(0.0, (time.monotonic_ns() - start_ns) / 1e9)))
