"""The generator's processes: forked workers, each running one job in an event loop of
its own and talking to the coordinator over a pipe; and what every process sets up."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from types import TracebackType
from typing import Any, Generic, TypeVar

from longpoll.server import raise_file_limit

C = TypeVar("C")
T = TypeVar("T")


class WorkerError(RuntimeError):
    """A worker failed, died, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Failed:
    """What a worker sends when its job raised."""

    error: str


def split(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` near-equal counts."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def parse_cores(text: str) -> tuple[int, ...]:
    """Parse '1', '1,2' or '2-3' into a tuple of core numbers."""
    cores: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        cores.extend(range(int(first), int(last) + 1) if sep else [int(first)])
    unknown = [c for c in cores if c not in os.sched_getaffinity(0)]
    if not cores or unknown:
        raise ValueError(f"--pin {text!r}: cores {unknown or text} not available")
    return tuple(cores)


def pin(cores: Sequence[int] | None) -> None:
    """Restrict this process to `cores` (no-op when None)."""
    if cores:
        os.sched_setaffinity(0, cores)


def raise_fd_limit(wanted: int) -> str:
    """Raise the descriptor soft limit as far as the hard limit allows; a warning when
    that is still below `wanted`, else ''."""
    soft, hard = raise_file_limit(wanted), resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if soft >= wanted:
        return ""
    return (
        f"file-descriptor limit {soft} (hard {hard}) is below the {wanted} this process "
        "needs: raise it (ulimit -Hn) or use more --procs"
    )


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop if installed, else on asyncio's loop."""
    try:
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (or its reaped children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class Channel:
    """A worker's end of its pipe, read from the event loop."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def send(self, message: object) -> None:
        """Send `message` to the coordinator."""
        self._pipe.send(message)

    async def receive(self) -> Any:
        """The coordinator's next message; None once it says stop or is gone."""
        if not self._pipe.poll():
            loop, fd = asyncio.get_running_loop(), self._pipe.fileno()
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, lambda: None if ready.done() else ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(fd)
                os.set_blocking(fd, True)  # the loop made it non-blocking: `send` may block
        try:
            return self._pipe.recv()
        except (EOFError, OSError):
            return None


Job = Callable[[C, Channel], Coroutine[Any, Any, None]]


def _work(job: Job[C], config: C, pipe: Pipe, others: list[Pipe], cores: Any, files: int) -> None:
    """A worker process: set up, say hello (a descriptor warning or ''), run the job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    for other in others:
        other.close()  # so that each pipe reads as closed once its other end is gone
    pin(cores)
    pipe.send(raise_fd_limit(files))
    try:
        run_async(job(config, Channel(pipe)))
    except Exception as exc:  # report, never hang the coordinator
        with contextlib.suppress(OSError):
            pipe.send(Failed(f"{type(exc).__name__}: {exc}"))
    finally:
        pipe.close()


class Workers(Generic[C]):
    """One forked process per config, each running `job(config, channel)`, pinned to
    `cores`, with room for `files` descriptors; a context manager."""

    def __init__(
        self, job: Job[C], configs: Sequence[C], cores: Sequence[int] | None, files: int
    ) -> None:
        context = multiprocessing.get_context("fork")
        pairs = [context.Pipe() for _ in configs]
        self._pipes = [ours for ours, _ in pairs]
        ends = [end for pair in pairs for end in pair]
        self._procs = [
            context.Process(
                target=_work,
                args=(job, config, theirs, [e for e in ends if e is not theirs], cores, files),
                name=f"bench-worker-{index}",
                daemon=True,
            )
            for index, (config, (_, theirs)) in enumerate(zip(configs, pairs, strict=True))
        ]
        self._theirs = [theirs for _, theirs in pairs]
        self.notes: list[str] = []  # descriptor warnings

    def __enter__(self) -> Workers[C]:
        for proc, theirs in zip(self._procs, self._theirs, strict=True):
            proc.start()
            theirs.close()
        try:
            self.notes = [note for note in self.gather(10.0) if note]
        except BaseException:
            self.stop(0.0)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(5.0 if kind is None else 0.0)

    def send(self, messages: Sequence[object]) -> None:
        """One message to each worker, in order."""
        for pipe, message in zip(self._pipes, messages, strict=True):
            pipe.send(message)

    def broadcast(self, message: object) -> None:
        """The same message to every worker."""
        self.send([message] * len(self._pipes))

    def gather(self, timeout_s: float) -> list[Any]:
        """One message from each worker, waiting at most `timeout_s` in total."""
        deadline = time.monotonic() + timeout_s
        replies = []
        for index, pipe in enumerate(self._pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise WorkerError(f"worker {index} did not answer within {timeout_s:.0f} s")
            try:
                reply = pipe.recv()
            except EOFError:
                raise WorkerError(f"worker {index} exited unexpectedly") from None
            if isinstance(reply, Failed):
                raise WorkerError(f"worker {index} failed: {reply.error}")
            replies.append(reply)
        return replies

    def stop(self, timeout_s: float) -> None:
        """Tell the workers to stop, wait up to `timeout_s` for them, then kill the rest."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            if proc.pid is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(1.0)
        for pipe in self._pipes:
            pipe.close()
