"""Stream: K subscribers in resume loops while a publisher sends R events/s for T s.

Each subscriber holds one keep-alive connection and polls in a loop: the first poll
asks for everything buffered (`since_time=-1`, on a fresh category), every later
one resumes from the last event received (`since_time` + `last_id`), or after a
timeout answer from its `timestamp`. The coordinator publishes event `seq` at
start + seq/R with ``{"run", "seq", "t"}`` in its data (`t`: `time.monotonic_ns()`
just before the write, one clock for every process on Linux), then an end event;
a subscriber stops when it has the end event (or at the deadline).

Per subscriber, every `seq` is marked in a bitmap: a second sighting is a
duplicate; a `seq` below one already seen is out of order; a published `seq` never
seen is missed. Latency is receive time - `t`, for first sightings.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from bench.conn import CLOSED, Connection, open_connections
from bench.credentials import NO_CREDENTIALS, Credentials
from bench.http import BlockingConnection, HTTPError, Response, Target, request
from bench.http import subscribe_request as _subscribe_request
from bench.procs import Channel, Workers, cpu_seconds, split
from bench.progress import Bar
from bench.server import ServerPid, ServerProcess, wait_until_waiting
from bench.stats import Latency, merge_counts, summarize

RECONNECTS = 3  # per subscriber: reopen a connection the server closed, at most this often
SAMPLE = 10  # missed sequence numbers kept per subscriber, for the report


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What one subscriber process does; times are `time.monotonic_ns()` values."""

    index: int
    target: Target
    events_path: str
    category: str
    poll_timeout_s: int
    token: str | None  # the subscribe token every poll carries
    run_id: str
    subscribers: int
    planned: int  # events the publisher plans to send (seq 0 .. planned-1), end event aside
    connect_concurrency: int
    connect_timeout_s: float
    start_ns: int  # first poll
    deadline_ns: int  # hard stop


@dataclass(frozen=True, slots=True)
class SubscriberResult:
    """What one subscriber saw; `missing` lists seqs below its limit never seen."""

    delivered: int
    events: int
    duplicates: int
    out_of_order: int
    missing: list[int]
    got_end: bool
    responses: int
    timeouts: int
    missed_flags: int
    reconnects: int
    foreign: int
    error: str


@dataclass(frozen=True, slots=True)
class StreamProcessResult:
    """One process's subscribers, latencies (ns) and CPU."""

    subscribers: list[SubscriberResult]
    latencies_ns: array.array[int]
    errors: dict[str, int]
    cpu_s: float
    cpu_window_s: float
    connected: int
    late_ms: float


class _Subscriber:
    """A subscriber's position and tallies; outlives its connection when it reconnects."""

    __slots__ = (
        "conn",
        "delivered",
        "done",
        "duplicates",
        "end_seq",
        "error",
        "events",
        "foreign",
        "high",
        "last_id",
        "missed_flags",
        "out_of_order",
        "reconnects",
        "responses",
        "run",
        "seen",
        "since",
        "timeouts",
    )

    def __init__(self, run: _StreamRun) -> None:
        self.run = run
        self.conn: Connection | None = None
        self.since = -1
        self.last_id: str | None = None
        self.seen = bytearray(run.config.planned)
        self.high = 0  # one past the highest seq seen
        self.delivered = self.duplicates = self.out_of_order = self.foreign = 0
        self.responses = self.timeouts = self.missed_flags = self.reconnects = 0
        self.events = 0  # events in answers, ours or not, end event included
        self.end_seq: int | None = None
        self.error = ""
        self.done = False

    def poll(self) -> None:
        """Send the next poll from the current position."""
        config = self.run.config
        request = _subscribe_request(
            config.target,
            config.events_path,
            config.category,
            config.poll_timeout_s,
            self.since,
            self.last_id,
            config.token,
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
        self.responses += 1
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
            self.events += len(events)
            self._events(events, now)
            if answer.get("missed") is True:
                self.missed_flags += 1
        elif "timeout" in answer:
            self.timeouts += 1
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

    def _events(self, events: list[Any], now: int) -> None:
        run_id = self.run.config.run_id
        seen = self.seen
        latencies = self.run.latencies
        for event in events:
            data = event.get("data")
            if not isinstance(data, dict) or data.get("run") != run_id:
                self.foreign += 1
                continue
            seq = data["seq"]
            if data.get("end"):
                self.end_seq = seq
                continue
            if not 0 <= seq < len(seen):
                self.foreign += 1
                continue
            if seen[seq]:
                self.duplicates += 1
                continue
            seen[seq] = 1
            self.delivered += 1
            latencies.append(now - data["t"])
            if seq < self.high:
                self.out_of_order += 1
            else:
                self.high = seq + 1
        last = events[-1]
        self.since, self.last_id = last["timestamp"], last["id"]

    def finish(self, error: str) -> None:
        """Stop polling; close the connection."""
        if self.done:
            return
        self.done = True
        self.error = error
        if self.conn is not None:
            self.conn.close()
        self.run.finished()

    def lost(self) -> None:
        """The connection dropped with a poll outstanding: reopen it and poll again."""
        if self.done:
            return
        if self.reconnects >= RECONNECTS or time.monotonic_ns() >= self.run.config.deadline_ns:
            self.finish("connection closed")
            return
        self.reconnects += 1
        self.conn = None
        self.run.reconnect(self)

    def result(self, published: int | None) -> SubscriberResult:
        """What this subscriber saw; missing seqs below the end event (or its highest)."""
        limit = self.end_seq if self.end_seq is not None else self.high
        limit = min(limit, len(self.seen)) if published is None else min(limit, published)
        missing: list[int] = []
        if self.seen.count(0, 0, limit):
            missing = [seq for seq in range(limit) if not self.seen[seq]]
        return SubscriberResult(
            delivered=self.delivered,
            events=self.events,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            missing=missing,
            got_end=self.end_seq is not None,
            responses=self.responses,
            timeouts=self.timeouts,
            missed_flags=self.missed_flags,
            reconnects=self.reconnects,
            foreign=self.foreign,
            error=self.error,
        )


class _StreamRun:
    """One process's subscribers."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.latencies: array.array[int] = array.array("q")
        self.errors: Counter[str] = Counter()
        self.outstanding = 0
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def finished(self) -> None:
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.done.set()

    def reconnect(self, subscriber: _Subscriber) -> None:
        task = asyncio.get_running_loop().create_task(self._reconnect(subscriber))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reconnect(self, subscriber: _Subscriber) -> None:
        config = self.config
        conns = await open_connections(
            [subscriber], config.target, self.errors, 1, config.connect_timeout_s
        )
        if not conns:
            subscriber.finish("reconnect failed")
            return
        subscriber.conn = conns[0]
        subscriber.poll()


async def _stream_process(config: StreamConfig) -> StreamProcessResult:
    run = _StreamRun(config)
    subscribers = [_Subscriber(run) for _ in range(config.subscribers)]
    conns = await open_connections(
        subscribers, config.target, run.errors, config.connect_concurrency, config.connect_timeout_s
    )
    for conn in conns:
        cast(_Subscriber, conn.owner).conn = conn
    active = [s for s in subscribers if s.conn is not None]
    await asyncio.sleep(max(0.0, (config.start_ns - time.monotonic_ns()) / 1e9))
    late_ms = max(0.0, (time.monotonic_ns() - config.start_ns) / 1e6)
    gc.collect()
    gc.disable()  # no collector pauses while the stream runs (the run is bounded)
    cpu_start = cpu_seconds()
    began = time.monotonic_ns()
    run.outstanding = len(active)
    if not active:
        run.done.set()
    for subscriber in active:
        subscriber.poll()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            run.done.wait(), max(0.0, (config.deadline_ns - time.monotonic_ns()) / 1e9)
        )
    cpu = cpu_seconds() - cpu_start
    window = (time.monotonic_ns() - began) / 1e9
    gc.enable()
    for subscriber in active:
        if not subscriber.done:
            subscriber.finish("no end event before the deadline")
    for task in list(run.tasks):
        task.cancel()
    return StreamProcessResult(
        subscribers=[s.result(None) for s in active],
        latencies_ns=run.latencies,
        errors=dict(run.errors),
        cpu_s=cpu,
        cpu_window_s=window,
        connected=len(active),
        late_ms=late_ms,
    )


async def stream_job(config: StreamConfig, channel: Channel) -> None:
    """A subscriber process: run, then send the result."""
    channel.send(await _stream_process(config))


@dataclass(slots=True)
class Publisher:
    """The coordinator's publishing: what was sent, acknowledged, and how late."""

    published: int = 0
    failed_seqs: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ack_ns: list[int] = field(default_factory=list)
    max_late_ms: float = 0.0
    end_acknowledged: bool = False


def _publish_one(
    conn: BlockingConnection,
    target: Target,
    path: str,
    category: str,
    data: dict[str, object],
    token: str | None,
) -> tuple[BlockingConnection, str]:
    """POST one event; '' or what went wrong (the connection is reopened if needed)."""
    body = json.dumps({"category": category, "data": data}, separators=(",", ":")).encode()
    try:
        response = conn.request(request(target, "POST", target.path(path), body, token))
    except HTTPError as exc:
        conn.close()
        return BlockingConnection(target, 10.0), f"publish failed ({exc})"
    if not response.keep_alive:
        conn.close()
        conn = BlockingConnection(target, 10.0)
    return conn, "" if response.status == 200 else f"publish answered HTTP {response.status}"


def publish_stream(
    target: Target,
    path: str,
    category: str,
    run_id: str,
    *,
    rate: float,
    planned: int,
    first_ns: int,
    payload_bytes: int,
    bar: Bar,
    token: str | None = None,
) -> Publisher:
    """Send `planned` events at `rate` per second from `first_ns`, then the end event
    (with `token` as `Authorization: Bearer`)."""
    log = Publisher()
    pad = "x" * payload_bytes
    conn = BlockingConnection(target, 10.0)
    interval = 1e9 / rate
    try:
        for seq in range(planned + 1):
            due = first_ns + int(seq * interval)
            bar.sleep_until(due, first_ns)
            sent = time.monotonic_ns()
            log.max_late_ms = max(log.max_late_ms, (sent - due) / 1e6)
            data: dict[str, object] = {"run": run_id, "seq": seq, "t": sent}
            if seq == planned:
                data["end"] = True
            elif pad:
                data["pad"] = pad
            conn, problem = _publish_one(conn, target, path, category, data, token)
            if seq == planned:
                log.end_acknowledged = not problem
            elif problem:
                log.failed_seqs.append(seq)
            if problem:
                log.errors[problem] += 1
            else:
                log.ack_ns.append(time.monotonic_ns() - sent)
            if seq < planned:
                log.published += 1
    finally:
        conn.close()
    return log


@dataclass(slots=True)
class StreamReport:
    """The whole stream run."""

    url: str
    subscribers: int
    rate: float
    duration_s: float
    procs: int
    pin: list[int] | None
    poll_timeout_s: int
    publishing_s: float = 0.0  # first publish to the end event acknowledged (>= duration_s)
    published: int = 0
    publish_failed: int = 0
    publisher_max_late_ms: float = 0.0
    publish_latency: Latency | None = None
    connected: int = 0
    expected: int = 0
    delivered: int = 0
    delivered_per_s: float = 0.0
    latency: Latency | None = None
    missed: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    missed_per_subscriber: list[int] = field(default_factory=list)
    duplicated_per_subscriber: list[int] = field(default_factory=list)
    missing_sample: dict[int, list[int]] = field(default_factory=dict)
    responses: int = 0
    events_received: int = 0
    timeouts: int = 0
    missed_flags: int = 0
    reconnects: int = 0
    foreign: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    gen_cpu_share: float | None = None
    server_cpu_share: float | None = None
    late_ms: float = 0.0

    @property
    def events_per_response(self) -> float | None:
        """Average events carried by one events answer."""
        answers = self.responses - self.timeouts
        return self.events_received / answers if answers > 0 else None

    @property
    def failed(self) -> bool:
        """True on any miss, duplicate, error, or subscriber that never connected."""
        return bool(
            self.missed
            or self.duplicated
            or self.out_of_order
            or self.errors
            or self.connected < self.subscribers
        )


def run_stream(
    target: Target,
    events_path: str,
    publish_path: str,
    category: str,
    *,
    subscribers: int,
    rate: float,
    duration_s: float,
    max_events: int,
    poll_timeout_s: int,
    payload_bytes: int,
    procs: int,
    cores: tuple[int, ...] | None,
    connect_concurrency: int,
    connect_timeout_s: float,
    stats: Target | None,
    settle_s: float,
    settle_timeout_s: float,
    drain_s: float,
    server_pid: ServerPid | None,
    credentials: Credentials = NO_CREDENTIALS,
) -> StreamReport:
    """Run the stream; every wait is bounded (connects, settle, publishing, drain)."""
    if subscribers < 1 or procs < 1 or rate <= 0 or duration_s <= 0 or max_events < 1:
        raise ValueError("subscribers, procs, rate, duration and max events must be positive")
    procs = min(procs, subscribers)
    planned = min(max_events, max(1, round(rate * duration_s)))
    duration_s = planned / rate
    run_id = uuid.uuid4().hex
    connect_s = 3 * connect_timeout_s + 30
    start = time.monotonic_ns() + int((1.0 + subscribers / 2000) * 1e9)
    deadline = start + int((connect_s + settle_timeout_s + duration_s + drain_s) * 1e9)
    token = credentials.subscribe_token(category)
    configs = [
        StreamConfig(
            index=index,
            target=target,
            events_path=events_path,
            category=category,
            poll_timeout_s=poll_timeout_s,
            token=token,
            run_id=run_id,
            subscribers=count,
            planned=planned,
            connect_concurrency=connect_concurrency,
            connect_timeout_s=connect_timeout_s,
            start_ns=start,
            deadline_ns=deadline,
        )
        for index, count in enumerate(split(subscribers, procs))
    ]
    server = ServerProcess(server_pid) if server_pid else None
    report = StreamReport(
        url=target.url,
        subscribers=subscribers,
        rate=rate,
        duration_s=duration_s,
        procs=procs,
        pin=list(cores) if cores else None,
        poll_timeout_s=poll_timeout_s,
    )
    files = max(c.subscribers for c in configs) + 64
    with Workers(stream_job, configs, cores, files) as workers:
        time.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
        wait_until_waiting(stats, subscribers, settle_s, settle_timeout_s)
        first = time.monotonic_ns() + int(0.2 * 1e9)
        server_cpu = server.cpu_seconds() if server else 0.0
        with Bar(f"stream {subscribers} x {rate:g}/s", duration_s) as bar:
            log = publish_stream(
                target,
                publish_path,
                category,
                run_id,
                rate=rate,
                planned=planned,
                first_ns=first,
                payload_bytes=payload_bytes,
                bar=bar,
                token=credentials.publish_token,
            )
        report.publishing_s = max(duration_s, (time.monotonic_ns() - first) / 1e9)
        if server is not None:
            report.server_cpu_share = (server.cpu_seconds() - server_cpu) / report.publishing_s
        timeout = (deadline - time.monotonic_ns()) / 1e9 + 30
        results: list[StreamProcessResult] = workers.gather(max(1.0, timeout))
    _tally(report, log, results)
    return report


def _tally(report: StreamReport, log: Publisher, results: list[StreamProcessResult]) -> None:
    """Fill `report` from the publisher's log and the subscriber processes' results."""
    failed = set(log.failed_seqs)
    published_ok = log.published - len(failed)
    errors: Counter[str] = Counter(log.errors)
    if not log.end_acknowledged:
        errors["end event not acknowledged"] += 1
    for process in results:
        errors.update(process.errors)
    subs = [s for process in results for s in process.subscribers]
    for index, sub in enumerate(subs):
        missing = [seq for seq in sub.missing if seq not in failed and seq < log.published]
        # seqs above the highest it saw are missing too when the end event never came
        unseen_tail = 0 if sub.got_end else max(0, published_ok - sub.delivered - len(missing))
        missed = len(missing) + unseen_tail
        report.missed_per_subscriber.append(missed)
        report.duplicated_per_subscriber.append(sub.duplicates)
        if missing:
            report.missing_sample[index] = missing[:SAMPLE]
        if sub.error:
            errors[sub.error] += 1
    report.published = log.published
    report.publish_failed = len(failed)
    report.publisher_max_late_ms = log.max_late_ms
    report.publish_latency = summarize(log.ack_ns)
    report.connected = sum(p.connected for p in results)
    report.expected = published_ok * report.subscribers
    report.delivered = sum(s.delivered for s in subs)
    report.delivered_per_s = report.delivered / report.publishing_s
    report.latency = summarize(ns for p in results for ns in p.latencies_ns)
    report.missed = sum(report.missed_per_subscriber) + published_ok * (
        report.subscribers - report.connected
    )
    report.duplicated = sum(report.duplicated_per_subscriber)
    report.out_of_order = sum(s.out_of_order for s in subs)
    report.responses = sum(s.responses for s in subs)
    report.events_received = sum(s.events for s in subs)
    report.timeouts = sum(s.timeouts for s in subs)
    report.missed_flags = sum(s.missed_flags for s in subs)
    report.reconnects = sum(s.reconnects for s in subs)
    report.foreign = sum(s.foreign for s in subs)
    report.errors = merge_counts([errors])
    report.gen_cpu_share = sum(p.cpu_s for p in results) / report.publishing_s
    report.late_ms = max((p.late_ms for p in results), default=0.0)


def stream_table(report: StreamReport) -> str:
    """The stream results as text."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.0f}%"

    latency = report.latency or summarize([])
    ack = report.publish_latency or summarize([])
    per = report.events_per_response
    with_missed = sum(1 for n in report.missed_per_subscriber if n)
    with_dups = sum(1 for n in report.duplicated_per_subscriber if n)
    errors = "; ".join(f"{k} x{v}" for k, v in sorted(report.errors.items())) or "-"
    lines = [
        f"stream against {report.url}: {report.subscribers} subscribers, "
        f"{report.rate:g} events/s for {report.duration_s:g} s, poll timeout "
        f"{report.poll_timeout_s} s",
        f"published      {report.published} (+ end event), failed {report.publish_failed}, "
        f"reply p50 {ms(ack.p50_ms)} ms p99 {ms(ack.p99_ms)} ms, "
        f"publisher at most {report.publisher_max_late_ms:.1f} ms behind schedule "
        f"(publishing took {report.publishing_s:.1f} s)",
        f"connected      {report.connected}/{report.subscribers}",
        f"delivered      {report.delivered}/{report.expected} "
        f"({report.delivered_per_s:.0f} events/s)",
        f"latency        p50 {ms(latency.p50_ms)} ms, p99 {ms(latency.p99_ms)} ms, "
        f"max {ms(latency.max_ms)} ms (publish written -> answer complete)",
        f"missed         {report.missed} ({with_missed} subscribers; max "
        f"{max(report.missed_per_subscriber, default=0)} per subscriber)",
        f"duplicated     {report.duplicated} ({with_dups} subscribers; max "
        f"{max(report.duplicated_per_subscriber, default=0)} per subscriber)",
        f"out of order   {report.out_of_order}",
        f"answers        {report.responses} ({report.timeouts} timeouts, "
        f"{'-' if per is None else f'{per:.2f}'} events per events answer, "
        f"{report.missed_flags} flagged missed), {report.reconnects} reconnects, "
        f"{report.foreign} foreign events",
        f"CPU            server {pct(report.server_cpu_share)} of a core while publishing; "
        f"generator {pct(report.gen_cpu_share)} (subscriber processes' CPU over the "
        "whole stream, per second of publishing)",
        f"errors         {errors}",
    ]
    for index, seqs in list(report.missing_sample.items())[:SAMPLE]:
        lines.append(f"  subscriber {index} missed seqs {seqs}")
    return "\n".join(lines)
