"""FilePersistor: the line format, loading damaged files, compaction, deletions, failures.

Real files in a temporary directory; the manager runs in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from longpoll import (
    AddOn,
    Event,
    LongpollManager,
    MemoryBackend,
    Options,
    PersistenceFailed,
    Subscription,
)
from longpoll.addons import FilePersistor
from longpoll.addons import file as file_module

T0 = 1_700_000_000_000  # epoch ms
EVERYTHING = -1


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@contextlib.asynccontextmanager
async def running(
    persistor: FilePersistor, clock: Clock | None = None, **options: Any
) -> AsyncIterator[LongpollManager]:
    backend = MemoryBackend(clock=clock) if clock is not None else MemoryBackend()
    async with LongpollManager(Options(**options), backend=backend, addon=persistor) as manager:
        yield manager


async def buffered(manager: LongpollManager, *categories: str) -> list[Event]:
    """Every buffered event of `categories`, without waiting."""
    found = asyncio.get_running_loop().create_future()
    found.set_result(None)
    batch = await manager.wait_for_events(
        Subscription(categories, 1, since_time=EVERYTHING), watch_disconnect=lambda: found
    )
    return batch.events


async def reload(path: Path, *categories: str, **options: Any) -> list[Event]:
    """Start a fresh manager on `path` and return what it loaded."""
    async with running(FilePersistor(path), **options) as manager:
        return await buffered(manager, *categories)


def line(timestamp: int, category: str, data: Any, event_id: uuid.UUID | None = None) -> bytes:
    """An event line as golongpoll writes it (Go's encoding/json, keys in struct order)."""
    event_id = event_id or uuid.uuid4()
    return b'{"timestamp":%d,"category":%b,"data":%b,"id":"%b"}' % (
        timestamp,
        orjson.dumps(category),
        orjson.dumps(data),
        str(event_id).encode(),
    )


def summary(events: list[Event]) -> list[tuple[int, str, Any, uuid.UUID]]:
    return [(e.timestamp, e.category, e.data, e.id) for e in events]


def file_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "longpoll.file" and r.levelno == logging.WARNING
    ]


# ------------------------------------------------------------------ the format


async def test_a_file_we_write_has_exactly_golongpolls_line_format(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    payloads: list[Any] = ["plain", "two\nlines <&>", {"nested": [1, 2.5, True]}, 0, "é😀"]
    async with running(FilePersistor(path)) as manager:
        published = [await manager.publish(f"cat-{i % 2}", data) for i, data in enumerate(payloads)]

    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == len(published)
    for text, event in zip(lines, published, strict=True):
        assert text == line(event.timestamp, event.category, event.data, event.id)
        decoded = orjson.loads(text)
        assert list(decoded) == ["timestamp", "category", "data", "id"]
        assert decoded["id"] == str(event.id)
    assert not (tmp_path / "events.jsonl.deleted").exists()


async def test_events_come_back_after_a_restart_with_ids_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    async with running(FilePersistor(path)) as manager:
        first = [await manager.publish(c, i) for i, c in enumerate("abab")]
    clock = Clock(T0)  # behind the stored events: timestamps must still go on after them
    async with running(FilePersistor(path), clock) as manager:
        assert summary(await buffered(manager, "a", "b")) == summary(first)
        newer = await manager.publish("a", "after restart")
        assert newer.timestamp >= first[-1].timestamp
    assert summary(await reload(path, "a", "b")) == summary([*first, newer])


async def test_a_golongpoll_file_loads_and_we_append_to_it(tmp_path: Path) -> None:
    # golongpoll writes "\n" before each event and never ends the file with one, and
    # Go's encoder escapes <, > and & in strings.
    ids = [uuid.uuid4() for _ in range(4)]
    go_lines = [
        line(T0, "news", "cheese is good", ids[0]),
        b'{"timestamp":%d,"category":"facts","data":"i\\n\\u003c3\\ncheese \\u0026 more",'
        b'"id":"%b"}' % (T0 + 1, str(ids[1]).encode()),
        b'{"timestamp":%d,"category":"news","data":{"n":1,"list":[true,null]},"id":"%b"}'
        % (T0 + 1, str(ids[2]).encode()),
        b'{"timestamp":%d,"category":"facts","data":12.5,"id":"%b"}'
        % (T0 + 2, str(ids[3]).upper().encode()),
    ]
    go_file = b"".join(b"\n" + text for text in go_lines)
    path = tmp_path / "golongpoll.data"
    path.write_bytes(go_file)
    clock = Clock(T0)
    async with running(FilePersistor(path), clock) as manager:
        loaded = await buffered(manager, "news", "facts")
        assert summary(loaded) == [
            (T0, "news", "cheese is good", ids[0]),
            (T0 + 1, "facts", "i\n<3\ncheese & more", ids[1]),
            (T0 + 1, "news", {"n": 1, "list": [True, None]}, ids[2]),
            (T0 + 2, "facts", 12.5, ids[3]),
        ]
        newer = await manager.publish("news", "ours")

    # Our line starts on a line of its own, and every line still decodes alone,
    # as golongpoll's loader needs.
    raw = path.read_bytes()
    assert raw.startswith(go_file + b"\n")
    assert raw.endswith(line(newer.timestamp, "news", "ours", newer.id) + b"\n")
    assert all(orjson.loads(text) for text in raw.split(b"\n") if text)
    assert summary(await reload(path, "news", "facts")) == summary([*loaded, newer])


async def test_damaged_file_loads_everything_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = "x" * (1024 * 1024)
    good = [
        line(T0, "c", "first"),
        line(T0 + 1, "c", big),
        line(T0 + 2, "c", {"after": "the big one"}),
        line(T0 + 3, "d", "last whole line"),
    ]
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                good[0],  # line 1
                b"",  # line 2: blank
                b'{"timestamp":17000,"categ',  # line 3: corrupt (cut mid-write earlier)
                b"   \t",  # line 4: blank
                good[1],  # line 5: 1 MiB of data
                b'{"timestamp":"soon","category":"c","data":1,"id":"%b"}'
                % str(uuid.uuid4()).encode(),  # line 6: wrong type
                b'["deleted","x"]',  # line 7: not an object
                b'{"timestamp":5,"category":"c","data":null,"id":"%b"}'
                % str(uuid.uuid4()).encode(),  # line 8: null data
                good[2],  # line 9
                b'{"timestamp":5,"category":"c","data":1,"id":"not-a-uuid"}',  # line 10
                good[3],  # line 11
                good[3][:40],  # line 12: torn last line, no newline
            ]
        )
    )
    with caplog.at_level(logging.WARNING, logger="longpoll.file"):
        async with running(FilePersistor(path), Clock(T0)) as manager:
            loaded = await buffered(manager, "c", "d")
            newer = await manager.publish("d", "appended after the torn line")
    assert [orjson.dumps(e.to_dict()) for e in loaded] == good
    assert len(loaded[1].data) == 1024 * 1024

    warnings = file_warnings(caplog)
    assert [w.split(": ", 1)[0] for w in warnings] == [
        f"{path} line {n}" for n in (3, 6, 7, 8, 10, 12)
    ]
    assert "not valid JSON" in warnings[0]
    assert "timestamp" in warnings[1]
    assert "incomplete last line" in warnings[-1]

    # The torn line stays (now a corrupt middle line); the new event is whole.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longpoll.file"):
        again = await reload(path, "c", "d")
    assert summary(again) == summary([*loaded, newer])
    assert "line 12: not valid JSON" in file_warnings(caplog)[-1]


async def test_events_out_of_order_fail_the_start_naming_the_line(tmp_path: Path) -> None:
    late = uuid.uuid4()
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(T0 + 10, "c", 1) + b"\n\n" + line(T0, "c", 2, late) + b"\n")
    manager = LongpollManager(addon=FilePersistor(path))
    with pytest.raises(ValueError, match=rf"line 3: event {late} of category 'c'.*line 1"):
        await manager.start()
    assert not manager.running
    await manager.aclose()


async def test_expired_events_are_skipped_and_timestamps_continue(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(T0 - 5_000, "c", "expired") + b"\n" + line(T0 + 20, "c", "fresh") + b"\n")
    async with running(FilePersistor(path), Clock(T0), event_ttl_seconds=1) as manager:
        assert [e.data for e in await buffered(manager, "c")] == ["fresh"]
        assert (await manager.publish("c", "new")).timestamp >= T0 + 20


async def test_a_missing_file_is_created_and_a_bad_directory_fails_the_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.jsonl"
    assert await reload(path, "c") == []
    assert path.exists()

    manager = LongpollManager(addon=FilePersistor(tmp_path / "missing" / "x.jsonl"))
    with pytest.raises(FileNotFoundError):
        await manager.start()
    assert not manager.running
    await manager.aclose()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"path": ""}, "path"),
        ({"write_buffer_size": 0}, "write_buffer_size"),
        ({"write_buffer_size": True}, "write_buffer_size"),
        ({"flush_period_seconds": 0}, "flush_period_seconds"),
        ({"flush_period_seconds": float("nan")}, "flush_period_seconds"),
        ({"fsync": 1}, "fsync"),
        ({"compact": "yes"}, "compact"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    tmp_path: Path, kwargs: dict[str, Any], name: str
) -> None:
    arguments: dict[str, Any] = {"path": tmp_path / "f", **kwargs}
    with pytest.raises(ValueError, match=name):
        FilePersistor(**arguments)


# ------------------------------------------------------------------ writing


async def test_without_fsync_events_are_written_within_the_flush_period(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    persistor = FilePersistor(path, flush_period_seconds=0.05)
    async with running(persistor) as manager:
        event = await manager.publish("c", 1)
        assert path.read_bytes() == b""  # gathered, not yet written
        for _ in range(100):
            await asyncio.sleep(0.01)
            if path.read_bytes():
                break
        assert path.read_bytes() == event.json + b"\n"
        assert persistor.stats.syncs == 0


async def test_a_full_write_buffer_is_written_before_the_period(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    persistor = FilePersistor(path, write_buffer_size=300, flush_period_seconds=3600)
    async with running(persistor) as manager:
        events = [await manager.publish("c", "x" * 50) for _ in range(10)]
        for _ in range(100):
            if persistor.stats.events_written >= 8:
                break
            await asyncio.sleep(0.01)
        written = path.read_bytes()
        assert written
        assert events[0].json in written
    assert path.read_bytes() == b"".join(e.json + b"\n" for e in events)


async def test_with_fsync_a_publish_returns_once_its_event_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    persistor = FilePersistor(path, flush_period_seconds=3600, fsync=True)
    async with running(persistor) as manager:
        event = await manager.publish("c", "durable")
        assert path.read_bytes() == event.json + b"\n"
        assert persistor.stats.syncs == 1

        # Publishes that arrive together share writes and fsyncs (group commit).
        events = await asyncio.gather(*(manager.publish("c", i) for i in range(200)))
        stats = persistor.stats
        assert stats.events_written == 201
        assert stats.syncs < 50
        on_disk = [orjson.loads(text)["id"] for text in path.read_bytes().splitlines()]
        assert on_disk == [str(e.id) for e in [event, *events]]


async def test_a_graceful_stop_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    async with running(FilePersistor(path, flush_period_seconds=3600)) as manager:
        events = [await manager.publish("c", i) for i in range(50)]
        assert path.read_bytes() == b""
    assert path.read_bytes() == b"".join(e.json + b"\n" for e in events)


# ------------------------------------------------------------------ deletions


async def test_deleted_events_are_recorded_and_do_not_come_back(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    deleted_path = tmp_path / "events.jsonl.deleted"
    options: dict[str, Any] = {"delete_event_after_first_retrieval": True}
    async with running(FilePersistor(path, flush_period_seconds=0.05), **options) as manager:
        consumed = [await manager.publish("c", i) for i in range(3)]
        kept = await manager.publish("other", "never read")
        batch = await manager.subscribe(Subscription(("c",), 1, since_time=EVERYTHING))
        assert batch.events == consumed
        assert await buffered(manager, "c") == []

    # The data file keeps golongpoll's format: only event lines.
    lines = path.read_bytes().splitlines()
    assert lines == [e.json for e in [*consumed, kept]]
    assert deleted_path.read_bytes().splitlines() == [str(e.id).encode() for e in consumed]

    assert summary(await reload(path, "c", "other", **options)) == summary([kept])


async def test_compaction_keeps_what_the_buffer_and_ttl_keep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    deleted = uuid.uuid4()
    now = T0 + 100_000
    lines = [
        line(T0, "a", "expired"),
        line(T0 + 1, "b", "expired too"),
        b"garbage",
        line(now - 500, "a", "a1"),
        line(now - 400, "b", "b1"),
        line(now - 300, "a", "a2"),
        line(now - 250, "a", "deleted", deleted),
        line(now - 200, "a", "a3"),
        line(now - 100, "b", "b2"),
        line(now - 50, "a", "a4"),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    path.chmod(0o640)
    (tmp_path / "events.jsonl.deleted").write_bytes(str(deleted).encode() + b"\n")

    persistor = FilePersistor(path, compact=True)
    monkeypatch.setattr(file_module, "wall_clock_ms", lambda: now)
    with caplog.at_level(logging.INFO, logger="longpoll.file"):
        async with running(
            persistor, Clock(now), max_event_buffer_size=2, event_ttl_seconds=60
        ) as manager:
            loaded = await buffered(manager, "a", "b")

    assert [e.data for e in loaded] == ["b1", "a3", "b2", "a4"]
    assert path.read_bytes() == b"".join(e.json + b"\n" for e in loaded)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["events.jsonl"]  # no temp file, no id file
    assert any("kept 4 of 8 events" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ failures


async def test_write_failures_are_logged_and_serving_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    real_write_all = file_module._write_all

    def half_then_fail(fd: int, data: bytes) -> None:
        real_write_all(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    persistor = FilePersistor(path, write_buffer_size=1)
    with caplog.at_level(logging.ERROR):
        async with running(persistor) as manager:
            monkeypatch.setattr(file_module, "_write_all", half_then_fail)
            lost = await manager.publish("c", "lost to a full disk")
            for _ in range(100):
                if persistor.stats.failures:
                    break
                await asyncio.sleep(0.01)
            monkeypatch.setattr(file_module, "_write_all", real_write_all)
            kept = await manager.publish("c", "written")
            assert [e.id for e in await buffered(manager, "c")] == [lost.id, kept.id]
    errors = [r for r in caplog.records if r.name == "longpoll.file"]
    assert len(errors) == 1
    assert isinstance(errors[0].exc_info and errors[0].exc_info[1], OSError)

    # The half-written line is skipped; the next event was written on a line of its own.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longpoll.file"):
        assert [e.id for e in await reload(path, "c")] == [kept.id]
    assert "line 1: not valid JSON" in file_warnings(caplog)[0]


async def test_with_fsync_a_failed_write_fails_the_publish(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with caplog.at_level(logging.ERROR, logger="longpoll"):
        async with running(FilePersistor(path, fsync=True)) as manager:
            monkeypatch.setattr(file_module, "_datasync", fail)
            with pytest.raises(PersistenceFailed, match="Input/output") as failure:
                await manager.publish("c", "not durable")
            assert isinstance(failure.value.__cause__, OSError)
            monkeypatch.undo()
            durable = await manager.publish("c", "durable")
    records = [r for r in caplog.records if r.name == "longpoll"]
    assert len(records) == 1
    assert "could not persist event" in records[0].getMessage()
    assert durable.id in [e.id for e in await reload(path, "c")]


async def test_a_failing_final_flush_is_logged_and_the_manager_closes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    manager = LongpollManager(addon=FilePersistor(tmp_path / "f", flush_period_seconds=60))
    await manager.start()
    await manager.publish("c", 1)
    monkeypatch.setattr(file_module, "_write_all", fail)
    with caplog.at_level(logging.ERROR, logger="longpoll"):
        await manager.aclose()
    assert not manager.running
    assert any("on_shutdown" in r.getMessage() for r in caplog.records)


async def test_an_addon_can_hold_a_publish_until_its_awaitable_completes() -> None:
    stored = asyncio.Event()

    class Durable(AddOn):
        def on_publish(self, event: Event) -> Awaitable[None]:
            async def persisted() -> None:
                await stored.wait()

            return persisted()

    async with LongpollManager(addon=Durable()) as manager:
        publishing = asyncio.create_task(manager.publish("c", 1))
        await asyncio.sleep(0.01)
        assert not publishing.done()
        assert len(await buffered(manager, "c")) == 1  # buffered, not yet acknowledged
        stored.set()
        event = await asyncio.wait_for(publishing, 1)
        assert event.data == 1


async def test_a_failing_on_delete_is_logged_and_the_subscriber_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingDelete(AddOn):
        def on_delete(self, events: Sequence[Event]) -> None:
            raise OSError("disk gone")

    options = Options(delete_event_after_first_retrieval=True)
    with caplog.at_level(logging.ERROR, logger="longpoll"):
        async with LongpollManager(options, addon=FailingDelete()) as manager:
            event = await manager.publish("c", 1)
            batch = await manager.subscribe(Subscription(("c",), 1, since_time=EVERYTHING))
            assert batch.events == [event]
            assert await buffered(manager, "c") == []
    assert [r.getMessage() for r in caplog.records if r.name == "longpoll"] == [
        "add-on failed in on_delete"
    ]


def test_a_persistor_serves_one_manager_once(tmp_path: Path) -> None:
    persistor = FilePersistor(tmp_path / "f")
    persistor.on_start()
    with pytest.raises(RuntimeError, match="only once"):
        persistor.on_start()
