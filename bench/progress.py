"""A progress bar on stderr while a scenario runs: drawn with `rich` (if installed) a few
times a second by the coordinator, which is idle while the workers measure; nothing when
stderr is not a terminal, or with `python -m bench --no-progress`."""

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
            from rich import progress
            from rich.console import Console
        except ImportError:
            return
        self._progress = progress.Progress(
            progress.TextColumn("{task.description}"),
            progress.BarColumn(),
            progress.MofNCompleteColumn(),
            progress.TimeElapsedColumn(),
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
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, completed: float, description: str | None = None) -> None:
        """Set the position (and the description, if given)."""
        if self._progress is not None:
            described = {} if description is None else {"description": description}
            self._progress.update(self._task, completed=completed, **described)

    def sleep_until(self, deadline_ns: int, start_ns: int) -> None:
        """Sleep until `deadline_ns` (`time.monotonic_ns()`), showing seconds since `start_ns`."""
        while (left := deadline_ns - time.monotonic_ns()) > 0:
            time.sleep(min(0.25, left / 1e9))
            self.update(min(self._total, max(0.0, (time.monotonic_ns() - start_ns) / 1e9)))
