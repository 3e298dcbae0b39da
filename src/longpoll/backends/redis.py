"""The Redis backend: one event history shared by many processes and machines.

Key scheme, all under `key_prefix` (default `longpoll`); category names are used
as raw UTF-8 bytes, which Redis keys hold safely whatever they contain:

- `<prefix>:meta`: a hash with `last` (the newest timestamp handed out), `seq` (the
  global sequence) and `taken` (1 once a resume point was handed out at `last`);
- `<prefix>:s:<category>`: a stream per category, the history. Entry ids are
  `<timestamp>-<sequence>` (both only grow), fields `i` (the event id) and `j`
  (the event encoded once as JSON, what responses are built from);
- `<prefix>:e:<category>`: a hash (`ts`, `seq`, `id`), the newest event of the
  category evicted for size or age (the gap marker);
- `<prefix>:i:<category>`: a hash from the id of each buffered event to its entry
  id, so that an event published again under its id is not stored twice;
- `<prefix>:categories`: a sorted set of category names scored by their newest
  timestamp (for stats and for forgetting expired categories);
- `<prefix>:log`: one stream of every event of every category, kept for
  `wake_log_seconds`, that each process reads with one blocking `XREAD` connection
  to wake its own waiters.

Timestamps, sequence numbers, trimming and the gap marker are assigned by Lua
scripts, so every process sees one order. Reads are transactions of plain commands
(`XRANGE`, `HMGET`): a script would cost Redis several times more, as it copies
every entry it returns. Concurrent publishes, and concurrent reads, go to Redis
together, one transaction per round trip. The multi-key scripts assume a single
Redis server (not Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from itertools import chain
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from longpoll.backends._shared import GroupCommit, purge_periodically, resume_cut, ttl_ms
from longpoll.backends.base import (
    Backend,
    BackendStats,
    CategoryStats,
    ReadResult,
    Repeated,
    Stored,
)
from longpoll.errors import BackendUnavailable, PublishUnconfirmed
from longpoll.event import Event, random_event_id
from longpoll.options import Options
from longpoll.subscription import Subscription

logger = logging.getLogger("longpoll.redis")

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_Commands = list[tuple[Any, ...]]  # Redis commands, each with its arguments
WAKE_CLIENT_NAME = "longpoll-wake"

# Shared Lua helpers: the current Redis time in ms, and trimming one category's
# stream for age and size while remembering the newest evicted entry.
_LUA_COMMON = """
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%d', n) end
local function mark_evicted(marker, entry, ttl)
    local ts, seq = string.match(entry[1], '^(%d+)-(%d+)$')
    local id = ''
    for k = 1, #entry[2], 2 do
        if entry[2][k] == 'i' then id = entry[2][k + 1] end
    end
    redis.call('HSET', marker, 'ts', ts, 'seq', seq, 'id', id)
    if ttl > 0 then
        redis.call('PEXPIREAT', marker, tonumber(ts) + 2 * ttl)
    end
end
local function forget_ids(index, entries)
    for _, entry in ipairs(entries) do
        for k = 1, #entry[2], 2 do
            if entry[2][k] == 'i' then redis.call('HDEL', index, entry[2][k + 1]) end
        end
    end
end
local function expire(stream, marker, index, ttl, now)
    if ttl <= 0 then return end
    local cutoff = now - ttl
    if cutoff < 0 then return end
    local old = redis.call('XRANGE', stream, '-', fmt(cutoff))
    if #old > 0 then
        mark_evicted(marker, old[#old], ttl)
        forget_ids(index, old)
        redis.call('XTRIM', stream, 'MINID', fmt(cutoff + 1))
    end
end
local function trim_to(stream, marker, index, ttl, max_size)
    local size = redis.call('XLEN', stream)
    if size >= max_size then
        local dropped = redis.call('XRANGE', stream, '-', '+', 'COUNT', size - max_size + 1)
        mark_evicted(marker, dropped[#dropped], ttl)
        forget_ids(index, dropped)
        redis.call('XTRIM', stream, 'MAXLEN', max_size - 1)
    end
end
"""

# KEYS: meta, stream, marker, categories, log, index
# ARGV: category, category JSON, data JSON, event id, max size, ttl ms, floor ts,
#       floor seq, log keep ms
# Returns {timestamp, sequence}; for an event id the category still holds,
# {timestamp, sequence, json} of that event, and stores nothing.
_APPEND = (
    _LUA_COMMON
    + """
local known = redis.call('HGET', KEYS[6], ARGV[4])
if known then
    local found = redis.call('XRANGE', KEYS[2], known, known)
    if #found > 0 then
        local ts, seq = string.match(known, '^(%d+)-(%d+)$')
        for k = 1, #found[1][2], 2 do
            if found[1][2][k] == 'j' then return {ts, seq, found[1][2][k + 1]} end
        end
    end
    redis.call('HDEL', KEYS[6], ARGV[4])
end
local now = now_ms()
local meta = redis.call('HMGET', KEYS[1], 'last', 'seq', 'taken')
local ts = now
local last = math.max(tonumber(meta[1]) or 0, tonumber(ARGV[7]))
local bump = 0
if meta[3] == '1' then bump = 1 end
if last + bump > ts then ts = last + bump end
local seq = math.max(tonumber(meta[2]) or 0, tonumber(ARGV[8])) + 1
redis.call('HSET', KEYS[1], 'last', fmt(ts), 'seq', fmt(seq), 'taken', '0')
local ttl = tonumber(ARGV[6])
expire(KEYS[2], KEYS[3], KEYS[6], ttl, now)
trim_to(KEYS[2], KEYS[3], KEYS[6], ttl, tonumber(ARGV[5]))
local json = '{"timestamp":' .. fmt(ts) .. ',"category":' .. ARGV[2] .. ',"data":'
    .. ARGV[3] .. ',"id":"' .. ARGV[4] .. '"}'
local entry = fmt(ts) .. '-' .. fmt(seq)
redis.call('XADD', KEYS[2], entry, 'i', ARGV[4], 'j', json)
redis.call('HSET', KEYS[6], ARGV[4], entry)
redis.call('ZADD', KEYS[4], ts, ARGV[1])
redis.call('XADD', KEYS[5], 'MINID', '~', fmt(now - tonumber(ARGV[9])), entry,
    'c', ARGV[1], 'j', json)
return {fmt(ts), fmt(seq)}
"""
)

# KEYS: meta, stream, marker, categories, index
# ARGV: category, timestamp, event id, event JSON, max size, ttl ms
_LOAD = (
    _LUA_COMMON
    + """
local ts = tonumber(ARGV[2])
local meta = redis.call('HMGET', KEYS[1], 'last', 'seq')
local last = tonumber(meta[1])
if last ~= nil and ts < last then
    return redis.error_reply('OLDER ' .. fmt(last))
end
local seq = (tonumber(meta[2]) or 0)
redis.call('HSET', KEYS[1], 'last', fmt(ts), 'taken', '0')
local ttl = tonumber(ARGV[6])
local now = now_ms()
if ttl > 0 and ts <= now - ttl then return 0 end
seq = seq + 1
redis.call('HSET', KEYS[1], 'seq', fmt(seq))
expire(KEYS[2], KEYS[3], KEYS[5], ttl, now)
trim_to(KEYS[2], KEYS[3], KEYS[5], ttl, tonumber(ARGV[5]))
redis.call('XADD', KEYS[2], fmt(ts) .. '-' .. fmt(seq), 'i', ARGV[3], 'j', ARGV[4])
redis.call('HSET', KEYS[5], ARGV[3], fmt(ts) .. '-' .. fmt(seq))
redis.call('ZADD', KEYS[4], ts, ARGV[1])
return 1
"""
)

# KEYS: stream, marker, index   ARGV: ttl ms
# Trims the category for age before a read (in the read's transaction).
_EXPIRE = (
    _LUA_COMMON
    + """
expire(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), now_ms())
return 0
"""
)

# The scripts that batches run by their SHA alone, loaded at start and after a loss.
_BATCHED_SCRIPTS = (_APPEND, _EXPIRE)
_APPEND_SHA, _EXPIRE_SHA = (
    hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
    for source in _BATCHED_SCRIPTS
)

# KEYS: meta   ARGV: floor ts, floor seq
_RESUME_POINT = (
    _LUA_COMMON
    + """
local meta = redis.call('HMGET', KEYS[1], 'last', 'seq')
local last = math.max(tonumber(meta[1]) or 0, tonumber(ARGV[1]), now_ms())
local seq = math.max(tonumber(meta[2]) or 0, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'last', fmt(last), 'seq', fmt(seq), 'taken', '1')
return {fmt(last), fmt(seq)}
"""
)

# KEYS: categories   ARGV: prefix, then triples of category, entry id and event id
_REMOVE = """
for k = 2, #ARGV, 3 do
    local stream = ARGV[1] .. ':s:' .. ARGV[k]
    redis.call('XDEL', stream, ARGV[k + 1])
    redis.call('HDEL', ARGV[1] .. ':i:' .. ARGV[k], ARGV[k + 2])
    if redis.call('XLEN', stream) == 0
        and redis.call('EXISTS', ARGV[1] .. ':e:' .. ARGV[k]) == 0 then
        redis.call('DEL', stream, ARGV[1] .. ':i:' .. ARGV[k])
        redis.call('ZREM', KEYS[1], ARGV[k])
    end
end
return 0
"""

# KEYS: categories   ARGV: prefix, ttl ms
_PURGE = (
    _LUA_COMMON
    + """
local ttl = tonumber(ARGV[2])
local cutoff = now_ms() - ttl
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, 1000)
for _, name in ipairs(names) do
    local stream = ARGV[1] .. ':s:' .. name
    local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if #newest > 0 then mark_evicted(ARGV[1] .. ':e:' .. name, newest[1], ttl) end
    redis.call('DEL', stream, ARGV[1] .. ':i:' .. name)
    redis.call('ZREM', KEYS[1], name)
end
return #names
"""
)

# KEYS: categories   ARGV: prefix
_STATS = """
local names = redis.call('ZRANGE', KEYS[1], 0, -1)
local total = 0
for _, name in ipairs(names) do
    total = total + redis.call('XLEN', ARGV[1] .. ':s:' .. name)
end
return {#names, total}
"""

# KEYS: categories   ARGV: prefix, limit
# The categories most recently published to, each followed by its buffered events.
_CATEGORY_STATS = """
local names = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local listed = {}
for _, name in ipairs(names) do
    listed[#listed + 1] = name
    listed[#listed + 1] = redis.call('XLEN', ARGV[1] .. ':s:' .. name)
end
return listed
"""


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _entry_position(entry_id: bytes) -> tuple[int, int]:
    timestamp, _, sequence = entry_id.partition(b"-")
    return int(timestamp), int(sequence)


def _json_field(fields: Sequence[bytes] | dict[bytes, bytes]) -> bytes:
    """An entry's `j` field: XREAD replies come parsed to dicts, XRANGE ones as flat lists."""
    if isinstance(fields, dict):
        return fields[b"j"]
    for index in range(0, len(fields), 2):
        if fields[index] == b"j":
            return fields[index + 1]
    raise KeyError("j")


def _event_from_entry(
    category: str, entry_id: bytes, fields: Sequence[bytes] | dict[bytes, bytes]
) -> Event:
    timestamp, sequence = _entry_position(entry_id)
    return Event.stored(timestamp, category, sequence, _json_field(fields))


_PING_SECONDS = 2.0


class RedisBackend(Backend):
    """Keeps the history in Redis, so that many processes serve one event history.

    `url` is a redis-py URL. Keys live under `key_prefix`. Each process holds one
    connection blocked on the wake-up log (re-established within about
    `health_check_seconds` when it dies) and a small pool of at most
    `max_connections` for requests. While Redis is unreachable, operations raise
    `BackendUnavailable`; a command whose answer takes longer than
    `command_timeout_seconds` fails so (a publish as `PublishUnconfirmed`).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "longpoll",
        health_check_seconds: float = 1.0,
        max_connections: int = 8,
        wake_log_seconds: float = 60.0,
        command_timeout_seconds: float = 10.0,
    ) -> None:
        if not key_prefix:
            raise ValueError("key_prefix must not be empty")
        if health_check_seconds <= 0:
            raise ValueError("health_check_seconds must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if wake_log_seconds <= 0:
            raise ValueError("wake_log_seconds must be positive")
        if command_timeout_seconds <= 0:
            raise ValueError("command_timeout_seconds must be positive")
        super().__init__()
        self.url = url
        self.key_prefix = key_prefix
        self.health_check_seconds = health_check_seconds
        self.max_connections = max_connections
        self._log_keep_ms = round(wake_log_seconds * 1000)
        self.command_timeout_seconds = command_timeout_seconds
        self._prefix = key_prefix.encode("utf-8")
        self._meta = self._prefix + b":meta"
        self._log = self._prefix + b":log"
        self._categories = self._prefix + b":categories"
        self._max_size = 250
        self._ttl_ms = 0
        self._notify: Callable[[Event], None] = lambda event: None
        # The newest (timestamp, sequence) handed to `notify`: waiters of this
        # process have seen every event up to it.
        self._position = (0, 0)
        # The newest (timestamp, sequence) that an append of this process got.
        self._appended = (0, 0)
        self._client: aioredis.Redis | None = None
        self._wake: aioredis.Redis | None = None
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._appends = self._batches()
        self._reads = self._batches()

    def _stream(self, category: str) -> bytes:
        return self._prefix + b":s:" + category.encode("utf-8")

    def _marker(self, category: str) -> bytes:
        return self._prefix + b":e:" + category.encode("utf-8")

    def _index(self, category: str) -> bytes:
        return self._prefix + b":i:" + category.encode("utf-8")

    def _connect(self, **kwargs: Any) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
            **kwargs,
        )

    async def start(self, options: Options, notify: Callable[[Event], None]) -> None:
        for name in ("max_buffered_bytes", "max_stored_categories"):
            if getattr(options, name) is not None:
                raise ValueError(
                    f"{name} is for the memory backend: bound Redis with its maxmemory setting"
                )
        self._max_size = options.max_event_buffer_size
        ttl = options.event_ttl_seconds
        self._ttl_ms = ttl_ms(ttl) or 0
        self._notify = notify
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=5,
            socket_connect_timeout=2,
            socket_timeout=self.command_timeout_seconds,
            retry=Retry(NoBackoff(), 1),
        )
        client = self._client = aioredis.Redis(connection_pool=pool)
        # Stream entries as Redis sends them: `_json_field` reads the flat list.
        client.set_response_callback("XRANGE", _raw_reply)
        self._load_script = client.register_script(_LOAD)
        self._resume_script = client.register_script(_RESUME_POINT)
        self._remove_script = client.register_script(_REMOVE)
        self._purge_script = client.register_script(_PURGE)
        self._stats_script = client.register_script(_STATS)
        async with self._unavailable_as_error():
            last, sequence = await client.hmget(self._meta, ["last", "seq"])
            # The batched scripts run by their SHA alone: load them up front.
            for source in _BATCHED_SCRIPTS:
                await client.script_load(source)
        self._position = (int(last or 0), int(sequence or 0))
        self._tasks.append(asyncio.create_task(self._listen()))
        if ttl is not None:
            self._tasks.append(asyncio.create_task(purge_periodically(ttl, self._purge)))

    async def close(self) -> None:
        # redis-py does not always give up a blocked read when its task is cancelled,
        # so the wake-up connection is closed under the listener, which then stops.
        self._closing = True
        wake = self._wake
        if wake is not None and wake.connection is not None:
            await wake.connection.disconnect(nowait=True)
        for task in self._tasks:
            if task is not self._tasks[0]:
                task.cancel()
        _, pending = await asyncio.wait(self._tasks, timeout=self.health_check_seconds + 3)
        for task in pending:
            logger.warning("a Redis backend task did not stop: %r", task)
            task.cancel()
        self._tasks.clear()
        grace_seconds = self.health_check_seconds + 3
        await asyncio.gather(self._appends.aclose(grace_seconds), self._reads.aclose(grace_seconds))
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None

    @contextlib.asynccontextmanager
    async def _unavailable_as_error(self) -> AsyncIterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            self.counts.backend_errors += 1
            raise BackendUnavailable(f"Redis is unavailable: {exc}") from exc

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendUnavailable("the Redis backend is not started")
        return self._client

    async def append(
        self, category: str, data: Any, data_json: bytes, event_id: uuid.UUID | None = None
    ) -> Stored:
        self._redis()
        if event_id is None:
            event_id = random_event_id()
        command = (
            "EVALSHA", _APPEND_SHA, 6,
            self._meta, self._stream(category), self._marker(category), self._categories,
            self._log, self._index(category),
            category, orjson.dumps(category), data_json, str(event_id), self._max_size,
            self._ttl_ms, *self._position, self._log_keep_ms,
        )  # fmt: skip
        try:
            async with self._unavailable_as_error():
                [reply] = await self._appends.submit([command])
        except BackendUnavailable as exc:
            # The script may have run before the answer was lost.
            raise PublishUnconfirmed(str(exc), event_id) from exc
        timestamp, sequence = int(reply[0]), int(reply[1])
        if len(reply) == 3:
            return Repeated(Event.stored(timestamp, category, sequence, reply[2]))
        self._appended = max(self._appended, (timestamp, sequence))
        # The waiters (of this process too) are woken by the log listener, in order.
        return Event.create(
            timestamp=timestamp,
            category=category,
            data=data,
            data_json=data_json,
            sequence=sequence,
            event_id=event_id,
        )

    def _batches(self) -> GroupCommit[_Commands, list[Any]]:
        """Commands that go to Redis in batches: one transaction per round trip."""
        return GroupCommit(
            self._run_batch, lambda: BackendUnavailable("the Redis backend is closing")
        )

    async def _run_batch(self, items: list[_Commands]) -> list[list[Any] | Exception]:
        """Each item's replies, or its first error; one round trip (two if Redis lost
        the scripts)."""
        results = await self._execute(items)
        unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unknown:
            # Redis lost its scripts (a restart): load them, run those items again.
            # They then come after the rest of the batch, which was concurrent anyway.
            retried: list[list[Any] | Exception]
            try:
                for source in _BATCHED_SCRIPTS:
                    await self._redis().script_load(source)
                retried = await self._execute([items[index] for index in unknown])
            except Exception as exc:  # only these failed: the others went through
                retried = [exc] * len(unknown)
            for index, result in zip(unknown, retried, strict=True):
                results[index] = result
        return results

    async def _execute(self, items: list[_Commands]) -> list[list[Any] | Exception]:
        async with self._redis().pipeline(transaction=True) as pipe:
            for commands in items:
                for command in commands:
                    pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        results: list[list[Any] | Exception] = []
        start = 0
        for commands in items:
            mine = replies[start : start + len(commands)]
            start += len(commands)
            error = next((reply for reply in mine if isinstance(reply, Exception)), None)
            results.append(mine if error is None else error)
        return results

    async def load(self, event: Event) -> None:
        self._redis()
        try:
            async with self._unavailable_as_error():
                await self._load_script(
                    keys=[self._meta, self._stream(event.category),
                          self._marker(event.category), self._categories,
                          self._index(event.category)],
                    args=[event.category, event.timestamp, str(event.id), event.json,
                          self._max_size, self._ttl_ms],
                )  # fmt: skip
        except ResponseError as exc:
            if "OLDER" not in str(exc):
                raise
            raise ValueError(
                f"event {event.id} of category {event.category!r} (timestamp "
                f"{event.timestamp}) is older than the newest event stored: events "
                "must be loaded oldest first"
            ) from None

    async def read(self, subscription: Subscription) -> ReadResult:
        since = subscription.since_time
        if since is None:
            # Only what comes after the request. The events this process stored
            # before it may still reach the waiter from a lagging wake-up listener.
            return ReadResult([], through=self._appended)
        names = list(dict.fromkeys(subscription.categories))
        first = "-" if since < 0 else f"{since}-0"
        # One transaction: the entries, markers and newest position agree.
        commands: _Commands = []
        for name in names:
            stream, marker = self._stream(name), self._marker(name)
            if self._ttl_ms:
                ids = self._index(name)
                commands.append(("EVALSHA", _EXPIRE_SHA, 3, stream, marker, ids, self._ttl_ms))
            commands.append(("XRANGE", stream, first, "+"))
            commands.append(("HMGET", marker, "ts", "seq", "id"))
        commands.append(("HMGET", self._meta, "last", "seq"))
        async with self._unavailable_as_error():
            replies = await self._reads.submit(commands)
        if self._ttl_ms:
            del replies[:-1:3]  # each category's trim: the first of its three replies
        per_category: list[list[Event]] = []
        markers: list[tuple[int, int, uuid.UUID]] = []
        for index, name in enumerate(names):
            entries, marker = replies[2 * index], replies[2 * index + 1]
            per_category.append([_event_from_entry(name, eid, f) for eid, f in entries])
            if marker[0] is not None:
                markers.append((int(marker[0]), int(marker[1]), uuid.UUID(marker[2].decode())))
        known = (
            (event.timestamp, event.sequence, event.id)
            for events in per_category
            for event in events
            if event.timestamp == since
        )
        cut = resume_cut(since, subscription.last_id, chain(known, markers))
        missed = since >= 0 and any((ts, seq) > cut for ts, seq, _ in markers)
        events = [e for events in per_category for e in events if (e.timestamp, e.sequence) > cut]
        if len(names) > 1:
            events.sort(key=lambda e: e.sequence)
        last, sequence = replies[-1]
        through = (int(last or 0), int(sequence or 0))
        # Up to `through`, the subscriber has every event (it read them, or they are
        # before its position); not so for a position in the future, which waits
        # for whatever comes next.
        return ReadResult(events, missed, through=through if cut <= through else None)

    async def remove(self, events: Sequence[Event]) -> None:
        args: list[Any] = [self._prefix]
        for event in events:
            args += [event.category, f"{event.timestamp}-{event.sequence}", event.id_ascii]
        async with self._unavailable_as_error():
            await self._remove_script(keys=[self._categories], args=args)

    async def resume_point(self) -> int:
        async with self._unavailable_as_error():
            last, _ = await self._resume_script(keys=[self._meta], args=[*self._position])
        return int(last)

    async def resume_after_wait(self, categories: Sequence[str]) -> tuple[int, list[Event]]:
        # Taken before any await: the waiter saw every event up to this position.
        seen = self._position
        # Without Redis no safe point can be agreed: the error is the answer, and
        # the client asks again from its own position.
        async with self._unavailable_as_error():
            last, sequence = await self._resume_script(keys=[self._meta], args=[*seen])
        if int(sequence) <= seen[1]:
            return int(last), []
        # Events stored in Redis but not yet delivered here: the waiter must get them,
        # or a client resuming from `last` would skip them.
        names = list(dict.fromkeys(categories))
        late: list[Event] = []
        after = f"({seen[0]}-{seen[1]}"
        async with self._unavailable_as_error():
            replies = await self._reads.submit(
                [("XRANGE", self._stream(name), after, "+") for name in names]
            )
        for name, entries in zip(names, replies, strict=True):
            late += [_event_from_entry(name, eid, fields) for eid, fields in entries]
        late.sort(key=lambda e: e.sequence)
        # `last` stays the safe point (events stored after the script get later
        # timestamps), also for a subscriber that already had every late event.
        return int(last), late

    async def ping(self) -> None:
        try:
            async with self._unavailable_as_error(), asyncio.timeout(_PING_SECONDS):
                await self._redis().ping()
        except TimeoutError:
            raise BackendUnavailable(f"Redis did not answer within {_PING_SECONDS:g} s") from None

    async def stats(self) -> BackendStats:
        async with self._unavailable_as_error():
            categories, buffered = await self._stats_script(
                keys=[self._categories], args=[self._prefix]
            )
        return BackendStats(categories=int(categories), buffered_events=int(buffered))

    async def category_stats(self, limit: int) -> list[CategoryStats]:
        script = self._redis().register_script(_CATEGORY_STATS)
        async with self._unavailable_as_error():
            listed = await script(keys=[self._categories], args=[self._prefix, limit])
        return [
            CategoryStats(name.decode("utf-8", "replace"), int(count))
            for name, count in zip(listed[::2], listed[1::2], strict=True)
        ]

    async def _listen(self) -> None:
        """Wake this process's waiters from the log, over one connection, forever."""
        block_ms = round(self.health_check_seconds * 1000)
        while not self._closing:
            connection = self._wake = self._connect(
                single_connection_client=True,
                socket_timeout=self.health_check_seconds + 2,
                client_name=WAKE_CLIENT_NAME,
            )
            try:
                while not self._closing:
                    after = f"{self._position[0]}-{self._position[1]}"
                    reply: Any = await connection.xread(
                        {self._log: after}, count=1000, block=block_ms
                    )
                    streams = reply.items() if isinstance(reply, dict) else reply or ()
                    for _, entries in streams:
                        for entry_id, fields in entries:
                            self._deliver(entry_id, fields)
            except (*_UNAVAILABLE, RedisError) as exc:
                if self._closing:
                    return
                self.counts.backend_errors += 1
                logger.warning("wake-up connection to Redis lost (%s): reconnecting", exc)
                await asyncio.sleep(min(1.0, self.health_check_seconds))
            except Exception:
                # Never go deaf: a surprise is logged and the listener starts over.
                logger.exception("wake-up listener failed: restarting it")
                await asyncio.sleep(min(1.0, self.health_check_seconds))
            finally:
                with contextlib.suppress(Exception):
                    await connection.aclose()

    def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        event = _event_from_entry(fields[b"c"].decode("utf-8"), entry_id, fields)
        self._position = (event.timestamp, event.sequence)
        try:
            self._notify(event)
        except Exception:
            logger.exception("waking waiters failed for event %s", event.id)

    async def _purge(self) -> None:
        # An outage is reported by the wake-up listener.
        with contextlib.suppress(*_UNAVAILABLE):
            await self._purge_script(keys=[self._categories], args=[self._prefix, self._ttl_ms])
