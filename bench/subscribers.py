"""The worker side of the stream: subscribers in resume loops, each on a keep-alive
connection of its own, marking every event they see.

A subscriber's first poll asks for everything buffered (`since_time=-1`, on a fresh
category); every later one resumes after the last event received (`since_time` and
`last_id`), or after a timeout answer from its `timestamp`. It stops at the end event
(or the deadline). Every `seq` is marked in a bitmap: a second sighting is a duplicate,
a `seq` below one already seen is out of order; latency is receive time - `t`.
"""

from __future__ import annotations

import array
import asyncio
import gc
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from bench.conn import CLOSED, Connection, open_connections
from bench.http import Response, Server
from bench.procs import Channel, cpu_seconds
from bench.settings import Stream

RECONNECTS = 3  # per subscriber: reopen a connection the server closed, at most this often


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What one subscriber process does; times are `time.monotonic_ns()` values."""

    settings: Stream
    server: Server
    token: str | None  # the subscribe token every poll carries
    run_id: str
    subscribers: int
    planned: int  # events the publisher plans to send (seq 0 .. planned-1), end event aside
    start_ns: int  # first poll
    deadline_ns: int  # hard stop


@dataclass(slots=True)
class Seen:
    """What one subscriber saw; `missing`: the seqs below its highest (or the end event)
    never seen; `events`: events in answers, ours or not, end event included."""

    delivered: int = 0
    events: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    missing: list[int] = field(default_factory=list)
    got_end: bool = False
    responses: int = 0
    timeouts: int = 0
    missed_flags: int = 0
    reconnects: int = 0
    foreign: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Subscribed:
    """One process's subscribers, latencies (ns), CPU, and when its last delivery came."""

    subscribers: list[Seen]
    latencies_ns: array.array[int]
    errors: dict[str, int]
    cpu_s: float
    connected: int
    late_ms: float
    last_ns: int
    lags_ns: array.array[int]  # how late the event loop ran a 1 ms timer, time after time


class Subscriber:
    """A subscriber's position and tallies; outlives its connection when it reconnects."""

    __slots__ = ("conn", "done", "end_seq", "high", "last_id", "run", "seen", "since", "tally")

    def __init__(self, run: Process) -> None:
        self.run = run
        self.conn: Connection | None = None
        self.since = -1
        self.last_id: str | None = None
        self.seen = bytearray(run.config.planned)
        self.high = 0  # one past the highest seq seen
        self.end_seq: int | None = None
        self.tally = Seen()
        self.done = False

    def poll(self) -> None:
        """Send the next poll from the current position."""
        config = self.run.config
        s, server = config.settings, config.server
        request = server.subscribe(
            s.category, s.poll_timeout, self.since, self.last_id, config.token
        )
        if self.conn is None or not self.conn.send(request):
            self.lost()

    def failed(self, conn: Connection, kind: str) -> None:
        """The connection broke: reopen it if the server closed it, else stop."""
        if kind == CLOSED:
            self.lost()
        else:
            self.finish(kind)

    def answered(self, conn: Connection, response: Response, now: int) -> None:
        """Take in one complete answer; poll again unless finished."""
        if not response.keep_alive:
            conn.close()
        tally = self.tally
        tally.responses += 1
        if response.status != 200:
            self.finish(f"HTTP {response.status}")
            return
        try:
            answer = orjson.loads(response.body)
            events = answer.get("events")
        except (orjson.JSONDecodeError, AttributeError):
            self.finish("answer is not a JSON object")
            return
        if isinstance(events, list) and events:
            self.saw(events, now)
            if answer.get("missed") is True:
                tally.missed_flags += 1
        elif "timeout" in answer:
            tally.timeouts += 1
            timestamp = answer.get("timestamp")
            if isinstance(timestamp, int) and timestamp > self.since:
                self.since, self.last_id = timestamp, None
        else:
            self.finish("answer with neither events nor timeout")
            return
        if self.end_seq is not None:
            self.finish("")
        elif now >= self.run.config.deadline_ns:
            self.finish("no end event before the deadline")
        else:
            self.poll()

    def saw(self, events: list[Any], now: int) -> None:
        """Mark `events`, received at `now`, and resume after the last of them."""
        run_id = self.run.config.run_id
        self.tally.events += len(events)
        for event in events:
            data = event.get("data")
            if not isinstance(data, dict) or data.get("run") != run_id:
                self.tally.foreign += 1
            elif data.get("end"):
                self.end_seq = data["seq"]
            else:
                self.mark(data["seq"], data["t"], now)
        last = events[-1]
        self.since, self.last_id = last["timestamp"], last["id"]

    def mark(self, seq: int, sent_ns: int | None, now: int) -> None:
        """Mark `seq`, sent at `sent_ns` (None: not timed) and received at `now`: a second
        sighting is a duplicate, one below the highest seen is out of order."""
        seen, tally = self.seen, self.tally
        if not 0 <= seq < len(seen):
            tally.foreign += 1
        elif seen[seq]:
            tally.duplicates += 1
        else:
            seen[seq] = 1
            tally.delivered += 1
            self.run.last_ns = now
            if sent_ns is not None:
                self.run.latencies.append(now - sent_ns)
            if seq < self.high:
                tally.out_of_order += 1
            else:
                self.high = seq + 1

    def finish(self, error: str) -> None:
        """Stop polling; close the connection."""
        if self.done:
            return
        self.done = True
        self.tally.error = error
        if self.conn is not None:
            self.conn.close()
        self.run.finished()

    def lost(self) -> None:
        """The connection dropped with a poll outstanding: reopen it and poll again."""
        if self.done:
            return
        if (
            self.tally.reconnects >= RECONNECTS
            or time.monotonic_ns() >= self.run.config.deadline_ns
        ):
            self.finish("connection closed")
            return
        self.tally.reconnects += 1
        self.conn = None
        self.run.reconnect(self)

    def result(self) -> Seen:
        """What this subscriber saw, with the seqs it missed below the end event (or its
        highest)."""
        limit = min(self.end_seq if self.end_seq is not None else self.high, len(self.seen))
        if self.seen.count(0, 0, limit):
            self.tally.missing = [seq for seq in range(limit) if not self.seen[seq]]
        self.tally.got_end = self.end_seq is not None
        return self.tally


class Process:
    """One process's subscribers and what they share."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.made = 0  # subscribers made
        self.last_ns = 0  # when the last delivery came
        self.latencies: array.array[int] = array.array("q")
        self.lags: array.array[int] = array.array("q")
        self.errors: Counter[str] = Counter()
        self.outstanding = 0
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def finished(self) -> None:
        """One subscriber is done."""
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.done.set()

    def reconnect(self, subscriber: Subscriber) -> None:
        """Open a new connection for `subscriber` and poll again on it."""
        task = asyncio.get_running_loop().create_task(self._reconnect(subscriber))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reconnect(self, subscriber: Subscriber) -> None:
        timeout_s = self.config.settings.connect_timeout
        conns = await open_connections(
            [subscriber], self.config.server.target, self.errors, 1, timeout_s
        )
        if not conns:
            subscriber.finish("reconnect failed")
            return
        subscriber.conn = conns[0]
        subscriber.poll()


async def stream_job(
    config: StreamConfig, channel: Channel, kind: type[Subscriber] = Subscriber
) -> None:
    """A subscriber process: connect, poll (or read the stream, as `kind` does) until the
    end event or the deadline, report."""
    run, s = Process(config), config.settings
    subscribers = [kind(run) for _ in range(config.subscribers)]
    target = config.server.target
    conns = await open_connections(
        subscribers, target, run.errors, s.connect_concurrency, s.connect_timeout
    )
    for conn in conns:
        cast(Subscriber, conn.owner).conn = conn
    active = [subscriber for subscriber in subscribers if subscriber.conn is not None]
    await asyncio.sleep(max(0.0, (config.start_ns - time.monotonic_ns()) / 1e9))
    late_ms = max(0.0, (time.monotonic_ns() - config.start_ns) / 1e6)
    gc.collect()
    gc.disable()  # no collector pauses while the stream runs (the run is bounded)
    cpu_start = cpu_seconds()
    run.outstanding = len(active)
    if not active:
        run.done.set()
    for subscriber in active:
        subscriber.poll()
    stop = asyncio.ensure_future(channel.receive())  # the coordinator gave up publishing
    waits = [stop, asyncio.ensure_future(run.done.wait()), asyncio.ensure_future(_lag(run))]
    left_s = (config.deadline_ns - time.monotonic_ns()) / 1e9
    await asyncio.wait(waits[:2], timeout=max(0.0, left_s), return_when=asyncio.FIRST_COMPLETED)
    cpu = cpu_seconds() - cpu_start
    gc.enable()
    for subscriber in active:  # the publisher gave up on the server, or the deadline came
        subscriber.finish("" if stop.done() else "no end event before the deadline")
    for task in [*waits, *run.tasks]:
        task.cancel()
    await asyncio.wait([*waits, *run.tasks])  # each done, the channel's reader removed
    seen = [subscriber.result() for subscriber in active]
    errors, connected, last = dict(run.errors), len(active), run.last_ns
    channel.send(Subscribed(seen, run.latencies, errors, cpu, connected, late_ms, last, run.lags))


async def _lag(run: Process) -> None:
    """Time after time, how late the event loop runs a 1 ms timer: how long a connection
    with data to read may have waited."""
    while True:
        due = time.monotonic_ns() + 1_000_000
        await asyncio.sleep(0.001)
        run.lags.append(time.monotonic_ns() - due)
