"""The coordinator's side of the worker processes: start, command, gather, stop."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType

from bench.messages import Command, Exit, Failed, Hello, Reply
from bench.worker import WorkerConfig, worker_main


class WorkerError(RuntimeError):
    """A worker failed, died, or did not answer in time."""


def split(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` near-equal counts."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class WorkerPool:
    """Worker processes, each reached through a pipe."""

    def __init__(self, configs: Sequence[WorkerConfig]) -> None:
        context = multiprocessing.get_context("fork")
        self._pipes: list[Connection] = []
        self._procs: list[BaseProcess] = []
        self._theirs: list[Connection] = []
        for config in configs:
            ours, theirs = context.Pipe(duplex=True)
            proc = context.Process(
                target=worker_main, args=(config, theirs), name=f"bench-worker-{config.index}"
            )
            proc.daemon = True
            self._pipes.append(ours)
            self._procs.append(proc)
            self._theirs.append(theirs)
        self.hellos: list[Hello] = []

    def __enter__(self) -> WorkerPool:
        for proc, theirs in zip(self._procs, self._theirs, strict=True):
            proc.start()
            theirs.close()  # so a dead worker reads as EOF here
        try:
            hellos = self.gather(10.0)
        except BaseException:
            self.stop()
            raise
        self.hellos = [h for h in hellos if isinstance(h, Hello)]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def send(self, commands: Sequence[Command]) -> None:
        """Send one command to each worker, in order."""
        for pipe, command in zip(self._pipes, commands, strict=True):
            pipe.send(command)

    def broadcast(self, command: Command) -> None:
        """Send the same command to every worker."""
        self.send([command] * len(self._pipes))

    def gather(self, timeout_s: float) -> list[Reply]:
        """One reply from each worker, waiting at most `timeout_s` in total."""
        deadline = time.monotonic() + timeout_s
        replies: list[Reply] = []
        for index, pipe in enumerate(self._pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise WorkerError(f"worker {index} did not answer within {timeout_s:.0f} s")
            try:
                reply: Reply = pipe.recv()
            except EOFError:
                raise WorkerError(f"worker {index} exited unexpectedly") from None
            if isinstance(reply, Failed):
                raise WorkerError(f"worker {reply.index} failed: {reply.error}")
            replies.append(reply)
        return replies

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the workers to exit, then make sure they have."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(Exit())
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            if proc.pid is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for pipe in self._pipes:
            pipe.close()
