"""FilePersistor: keep events in a file across restarts, in golongpoll's line format.

The data file holds one event per line, a JSON object with exactly the four keys
an event has on the wire, in golongpoll's order:

    {"timestamp":1616040198889,"category":"news","data":{"title":"hi"},"id":"<uuid>"}

golongpoll's `FilePersistorAddOn` writes and reads the same lines (it starts each
line with the newline instead of ending it with one; both loaders skip blank lines),
so a data file written by either loads in the other. golongpoll reads lines of at
most 64 KiB: it stops loading at a longer one. Here there is no limit.

With delete-after-first-retrieval, the ids of deleted events go to a side file,
`<path>.deleted`, one id per line. They cannot go into the data file: golongpoll
decodes each line into an event and ignores keys it does not know, so a record such
as `{"deleted": "<id>"}` would load there as an event with timestamp 0, out of
chronological order, which golongpoll refuses by panicking.

All file I/O runs in one writer thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import stat
import tempfile
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from longpoll.addons.base import AddOn
from longpoll.backends._shared import GroupCommit, ttl_ms, wall_clock_ms
from longpoll.errors import InvalidRequest
from longpoll.event import Event, check_category
from longpoll.options import Options, check_int

logger = logging.getLogger("longpoll.file")

DELETED_SUFFIX = ".deleted"
_LOAD_CHUNK = 1024  # events parsed per hop to the reading thread
_INT64 = 2**63


@dataclass(frozen=True, slots=True)
class FileStats:
    """What a `FilePersistor` has done since it started.

    `writes` counts batches handed to the operating system and `syncs` the fsync
    calls: with `fsync=True`, events published together share one of each.
    """

    events_loaded: int
    lines_skipped: int
    events_written: int
    deletions_written: int
    writes: int
    syncs: int
    failures: int


class _State(enum.Enum):
    NEW = "new"
    LOADING = "loading"
    RUNNING = "running"
    CLOSED = "closed"


class FilePersistor(AddOn):
    """Persists published events to `path` and loads them back on start.

    - `write_buffer_size`: bytes of new events gathered before they are written.
    - `flush_period_seconds`: events are written at most this long after they are
      published, even when the buffer is not full. Written means handed to the
      operating system: it survives the process being killed (SIGKILL), and
      without `fsync`, a crash loses at most the events of the last period. A
      graceful shutdown writes everything.
    - `fsync=True`: each publish is acknowledged only once its event is written
      and fsync'd, so no acknowledged event is lost, even to a power cut. Events
      published while one fsync runs share the next write and fsync.
    - `compact=True`: on start, rewrite the file with only the events the manager
      keeps (per category the newest `max_event_buffer_size`, none past the TTL,
      none deleted), atomically: a temporary file in the same directory, fsync,
      rename over the old one.

    Loading skips blank lines, and skips a line that is not an event (a corrupt
    line, or a last line torn by a crash mid-write) with a warning naming its line
    number on the `longpoll.file` logger. Events out of chronological order make
    the manager's `start()` raise `ValueError` naming the line.

    Write failures are logged on `longpoll.file` and serving goes on; with `fsync`,
    the publish whose event could not be made durable raises instead of being
    acknowledged (HTTP 500).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        write_buffer_size: int = 64 * 1024,
        flush_period_seconds: float = 1.0,
        *,
        fsync: bool = False,
        compact: bool = False,
    ) -> None:
        if not os.fspath(path):
            raise ValueError("path must not be empty")
        check_int("write_buffer_size", write_buffer_size, 1)
        period = flush_period_seconds
        if isinstance(period, bool) or not isinstance(period, int | float) or not 0 < period < 1e9:
            raise ValueError(
                f"flush_period_seconds must be a positive number of seconds, not {period!r}"
            )
        if not isinstance(fsync, bool):
            raise ValueError("fsync must be a bool")
        if not isinstance(compact, bool):
            raise ValueError("compact must be a bool")
        self.path = Path(path)
        self.deleted_path = Path(os.fspath(path) + DELETED_SUFFIX)
        self.write_buffer_size = write_buffer_size
        self.flush_period_seconds = float(period)
        self.fsync = fsync
        self.compact = compact
        self._options = Options()
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Gathered on the loop, written by the thread.
        self._lines: list[bytes] = []
        self._pending_bytes = 0
        self._deletions: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        # With fsync: lines published while one write runs share the next.
        self._commits = GroupCommit(self._write_durably, self._not_running)
        # Owned by the writer thread.
        self._fd: int | None = None
        self._deleted_fd: int | None = None
        self._torn = False  # the data file does not end with a newline
        self._deleted_torn = False
        # Counters.
        self._loaded = 0
        self._skipped = 0
        self._events_written = 0
        self._deletions_written = 0
        self._writes = 0
        self._syncs = 0
        self._failures = 0

    @property
    def stats(self) -> FileStats:
        """Counters of what was loaded and written."""
        return FileStats(
            events_loaded=self._loaded,
            lines_skipped=self._skipped,
            events_written=self._events_written,
            deletions_written=self._deletions_written,
            writes=self._writes,
            syncs=self._syncs,
            failures=self._failures,
        )

    # ---------------------------------------------------------------- hooks

    def on_attach(self, options: Options) -> None:
        self._options = options

    def on_start(self) -> AsyncIterator[Event]:
        if self._state is not _State.NEW:
            raise RuntimeError("a FilePersistor can be started only once")
        self._state = _State.LOADING
        return self._load()

    def on_publish(self, event: Event) -> asyncio.Future[None] | None:
        loop = self._loop
        if self._state is not _State.RUNNING or loop is None:
            raise self._not_running()
        if self.fsync:
            # Written even if its publisher stops waiting.
            return asyncio.shield(self._commits.enqueue(event.json))
        self._lines.append(event.json)
        self._pending_bytes += len(event.json) + 1
        if self._pending_bytes >= self.write_buffer_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.flush_period_seconds, self._flush)
        return None

    def on_delete(self, events: Sequence[Event]) -> None:
        loop = self._loop
        if self._state is not _State.RUNNING or loop is None:
            raise self._not_running()
        self._deletions.extend(str(event.id).encode("ascii") for event in events)
        if self._timer is None:
            self._timer = loop.call_later(self.flush_period_seconds, self._flush)

    async def on_shutdown(self) -> None:
        if self._state is not _State.RUNNING:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        self._cancel_timer()
        executor = self._executor
        assert executor is not None
        try:
            await self._commits.aclose(None)  # the durable lines published so far
            lines, deletions = self._take_all()
            # The executor runs one job at a time, in order: this one comes last.
            await asyncio.wrap_future(executor.submit(self._write_and_close, lines, deletions))
        finally:
            executor.shutdown(wait=True)
            self._executor = None

    # ---------------------------------------------------------------- writing

    def _not_running(self) -> RuntimeError:
        return RuntimeError(f"FilePersistor({str(self.path)!r}) is not running")

    def _take_all(self) -> tuple[list[bytes], list[bytes]]:
        taken = self._lines, self._deletions
        self._lines, self._deletions = [], []
        self._pending_bytes = 0
        return taken

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        """Hand what is gathered to the writer thread (with fsync: the deletions)."""
        self._cancel_timer()
        if self._state is not _State.RUNNING:
            return
        lines, deletions = self._take_all()
        if lines or deletions:
            job = self._submit(self._write, lines, deletions, self.fsync)
            job.add_done_callback(self._log_failure)

    async def _write_durably(self, lines: list[bytes]) -> list[Exception | None]:
        """Write and fsync a batch of lines (and the deletions gathered)."""
        deletions, self._deletions = self._deletions, []
        await asyncio.wrap_future(self._submit(self._write, lines, deletions, True))
        return [None] * len(lines)

    def _submit(self, fn: Any, *args: Any) -> Future[None]:
        executor = self._executor
        assert executor is not None
        future: Future[None] = executor.submit(fn, *args)
        return future

    def _log_failure(self, job: Future[None]) -> None:
        exc = job.exception()
        if exc is not None:
            logger.error("could not write to %s", self.path, exc_info=exc)

    def _write(self, lines: list[bytes], deletions: list[bytes], sync: bool) -> None:
        """In the writer thread: append `lines` and `deletions`, fsync if `sync`."""
        fd = self._fd
        assert fd is not None
        try:
            if lines:
                data = b"\n".join(lines) + b"\n"
                if self._torn:
                    data = b"\n" + data
                self._torn = True  # until the whole write is in
                _write_all(fd, data)
                self._torn = False
                self._writes += 1
                if sync:
                    _datasync(fd)
                    self._syncs += 1
                self._events_written += len(lines)
            if deletions:
                deleted_fd = self._open_deleted()
                # A crash may repeat a deletion record: harmless.
                data = b"\n".join(dict.fromkeys(deletions)) + b"\n"
                if self._deleted_torn:
                    data = b"\n" + data
                self._deleted_torn = True
                _write_all(deleted_fd, data)
                self._deleted_torn = False
                if sync:
                    _datasync(deleted_fd)
                self._deletions_written += len(deletions)
        except BaseException:
            self._failures += 1
            raise

    def _write_and_close(self, lines: list[bytes], deletions: list[bytes]) -> None:
        try:
            self._write(lines, deletions, False)
            # A graceful stop leaves everything on disk, whatever the fsync option.
            for fd in (self._fd, self._deleted_fd):
                if fd is not None:
                    _datasync(fd)
        finally:
            for fd in (self._fd, self._deleted_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._deleted_fd = None

    def _open_data_file(self) -> None:
        """In the writer thread: open the data file for appending."""
        self._fd, self._torn = _open_append(self.path, self.fsync)

    def _open_deleted(self) -> int:
        if self._deleted_fd is None:
            self._deleted_fd, self._deleted_torn = _open_append(self.deleted_path, self.fsync)
        return self._deleted_fd

    # ---------------------------------------------------------------- loading

    async def _load(self) -> AsyncIterator[Event]:
        self._loop = asyncio.get_running_loop()
        deleted = await asyncio.to_thread(self._read_deleted)
        if self.compact:
            for event in await asyncio.to_thread(self._compact, deleted):
                yield event
        else:
            reader = self._read_events(deleted)
            while chunk := await asyncio.to_thread(_next_chunk, reader):
                for event in chunk:
                    yield event
        logger.info(
            "loaded %d events from %s (%d lines skipped)", self._loaded, self.path, self._skipped
        )
        # Only now: a start that failed while loading leaves no thread behind.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="longpoll-file")
        await asyncio.wrap_future(self._executor.submit(self._open_data_file))
        self._state = _State.RUNNING

    def _read_deleted(self) -> set[uuid.UUID]:
        deleted: set[uuid.UUID] = set()
        for number, line, _ in _lines_of(self.deleted_path):
            try:
                deleted.add(uuid.UUID(line.decode("ascii")))
            except ValueError:
                logger.warning("%s line %d: not an event id; skipped", self.deleted_path, number)
        return deleted

    def _read_events(self, deleted: set[uuid.UUID]) -> Iterator[Event]:
        """The file's events, oldest first, skipping bad lines and deleted events."""
        previous: Event | None = None
        previous_line = 0
        for number, line, ended in _lines_of(self.path):
            try:
                event = _parse(line)
            except ValueError as exc:
                self._skipped += 1
                if ended:
                    logger.warning("%s line %d: %s; skipped", self.path, number, exc)
                else:
                    logger.warning(
                        "%s line %d: incomplete last line (a crash while writing?); skipped",
                        self.path,
                        number,
                    )
                continue
            if event.id in deleted:
                continue
            if previous is not None and event.timestamp < previous.timestamp:
                raise ValueError(
                    f"{self.path} line {number}: event {event.id} of category "
                    f"{event.category!r} (timestamp {event.timestamp}) is older than the "
                    f"event on line {previous_line} (timestamp {previous.timestamp}): "
                    "events must be in chronological order"
                )
            previous, previous_line = event, number
            self._loaded += 1
            yield event

    def _compact(self, deleted: set[uuid.UUID]) -> list[Event]:
        """Keep what the manager would keep; rewrite the file with only that."""
        if not self.path.exists():
            return []
        size = self._options.max_event_buffer_size
        ttl = ttl_ms(self._options.event_ttl_seconds)
        oldest = -_INT64
        if ttl is not None:
            oldest = wall_clock_ms() - ttl + 1
        categories: dict[str, deque[tuple[int, Event]]] = {}
        read = 0
        for index, event in enumerate(self._read_events(deleted)):
            read = index + 1
            if event.timestamp < oldest:
                continue
            kept = categories.get(event.category)
            if kept is None:
                kept = categories[event.category] = deque(maxlen=size)
            kept.append((index, event))
        events = [
            event for _, event in sorted(pair for kept in categories.values() for pair in kept)
        ]
        self._loaded = len(events)
        try:
            self._rewrite(events)
        except OSError:
            logger.exception("could not compact %s; it is left as it was", self.path)
        else:
            logger.info("compacted %s: kept %d of %d events", self.path, len(events), read)
        return events

    def _rewrite(self, events: list[Event]) -> None:
        directory = self.path.parent
        mode = stat.S_IMODE(self.path.stat().st_mode)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, mode)
            _write_all(fd, b"".join(event.json + b"\n" for event in events))
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(temp, self.path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _sync_directory(directory)
        # The deleted events are gone from the new file: their ids are not needed.
        # (A crash before this line leaves ids of events no longer there: harmless.)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.deleted_path)
            _sync_directory(directory)


def _lines_of(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """The lines of `path` that are not blank (none if it is missing), stripped: each
    with its number and whether it ends with a newline."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        for number, raw in enumerate(file, 1):
            line = raw.strip()
            if line:
                yield number, line, raw.endswith(b"\n")


def _parse(line: bytes) -> Event:
    """One line of the data file as an event; ValueError saying what is wrong."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    timestamp = obj.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError("timestamp missing or not an integer")
    if not -_INT64 <= timestamp < _INT64:
        raise ValueError("timestamp beyond 64 bits")
    try:
        category = check_category(obj.get("category"))
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None
    data = obj.get("data")
    if data is None:
        raise ValueError("data missing or null")
    raw_id = obj.get("id")
    if not isinstance(raw_id, str):
        raise ValueError("id missing or not a string")
    try:
        event_id = uuid.UUID(raw_id)
    except ValueError:
        raise ValueError("id is not a UUID") from None
    return Event.create(
        timestamp=timestamp,
        category=category,
        data=data,
        data_json=orjson.dumps(data),
        sequence=0,
        event_id=event_id,
    )


def _next_chunk(events: Iterator[Event]) -> list[Event]:
    return list(islice(events, _LOAD_CHUNK))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _datasync(fd: int) -> None:
    # fdatasync also flushes the file's new size, which is what an append needs.
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS and Windows
        os.fsync(fd)


def _open_append(path: Path, durable: bool) -> tuple[int, bool]:
    """Open `path` for appending (creating it); also whether its last line is unfinished."""
    existed = path.exists()
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        if not existed and durable:
            _sync_directory(path.parent)  # the new file's name must survive a crash too
    except BaseException:
        os.close(fd)
        raise
    return fd, torn


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse it
        pass
    finally:
        os.close(fd)


__all__ = ["DELETED_SUFFIX", "FilePersistor", "FileStats"]
