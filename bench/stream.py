"""Stream: K subscribers in resume loops (`bench.subscribers`), or each reading a stream
of server-sent events (`bench.sse`), while the coordinator publishes R events/s for T s on
one keep-alive connection, event `seq` at start + seq/R with ``{"run", "seq", "t"}`` in
its data (`t`: `time.monotonic_ns()` just before the write, one clock for every process on
Linux), then an end event. For long polling each publish waits for the last one's answer;
for SSE they are pipelined, each on its schedule. A published `seq` that a subscriber never
saw is missed; a publish that failed is left out and reported."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import cast

from bench.conn import Connection, Pipelined, open_connections
from bench.http import BlockingConnection, HTTPError, Response, Server
from bench.procs import Workers, cpu_seconds, run_async, split
from bench.progress import Bar
from bench.report import Latency, errors_text, fixed, merge_counts, summarize
from bench.servers import ServerProcess, wait_until_waiting
from bench.settings import Stream, StreamSSE
from bench.sse import sse_job
from bench.subscribers import StreamConfig, Subscribed, stream_job

SAMPLE = 10  # missed sequence numbers kept per subscriber, for the report


@dataclass(slots=True)
class Publisher:
    """The coordinator's publishing of `planned` events and the end event: what was sent,
    acknowledged, and how late. It owns its connection when it pipelines, and then takes
    the answers in order: `outstanding` holds the seqs sent and not answered yet."""

    planned: int
    published: int = 0
    failed_seqs: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ack_ns: list[int] = field(default_factory=list)
    max_late_ms: float = 0.0
    end_acknowledged: bool = False
    unanswered: int = 0  # publishes the server had not answered when the publisher gave up
    sent_s: float = 0.0  # first publish to the end event sent
    outstanding: deque[int] = field(default_factory=deque)
    answered_all: asyncio.Event = field(default_factory=asyncio.Event)  # set as it empties

    def event(self, s: Stream, server: Server, run_id: str, seq: int, due_ns: int) -> bytes:
        """The publish of `seq` (due at `due_ns`), with its send time: now."""
        sent = time.monotonic_ns()
        self.max_late_ms = max(self.max_late_ms, (sent - due_ns) / 1e6)
        data: dict[str, object] = {"run": run_id, "seq": seq, "t": sent}
        if seq == self.planned:
            data["end"] = True
        else:
            self.published += 1
            if s.payload_bytes:
                data["pad"] = "x" * s.payload_bytes
        return server.publish(s.category, data, compact=True)

    def record(self, seq: int, problem: str, ack_ns: int) -> None:
        """How the publish of `seq` went: `problem` (empty if none), else its reply time."""
        if seq == self.planned:
            self.end_acknowledged = not problem
        elif problem:
            self.failed_seqs.append(seq)
        if problem:
            self.errors[problem] += 1
        else:
            self.ack_ns.append(ack_ns)

    def answered(self, conn: Connection, response: Response, now_ns: int) -> None:
        problem = "" if response.status == 200 else f"publish answered HTTP {response.status}"
        self.record(self.outstanding.popleft(), problem, now_ns - conn.sent_ns)
        if not self.outstanding:
            self.answered_all.set()

    def failed(self, conn: Connection | None, kind: str) -> None:
        while self.outstanding:
            self.record(self.outstanding.popleft(), f"publish failed ({kind})", 0)
        self.answered_all.set()


def publish_stream(
    s: Stream, server: Server, run_id: str, planned: int, first_ns: int, bar: Bar
) -> Publisher:
    """Send `planned` events at `s.rate` per second from `first_ns`, then the end event,
    each after the last was answered (closed loop, on one keep-alive connection)."""
    log, target = Publisher(planned), server.target
    conn = BlockingConnection(target, 10.0)
    try:
        for seq in range(planned + 1):
            due = first_ns + int(seq * 1e9 / s.rate)
            bar.sleep_until(due, first_ns)
            sent, raw = time.monotonic_ns(), log.event(s, server, run_id, seq, due)
            try:
                response = conn.request(raw)
                problem = (
                    "" if response.status == 200 else f"publish answered HTTP {response.status}"
                )
            except HTTPError as exc:
                response, problem = None, f"publish failed ({exc})"
            if response is None or not response.keep_alive:
                conn.close()
                conn = BlockingConnection(target, 10.0)
            log.record(seq, problem, time.monotonic_ns() - sent)
        log.sent_s = (time.monotonic_ns() - first_ns) / 1e9
    finally:
        conn.close()
    return log


async def publish_open(
    s: Stream, server: Server, run_id: str, planned: int, first_ns: int, bar: Bar
) -> Publisher:
    """Send `planned` events at `s.rate` per second from `first_ns`, then the end event,
    each on its schedule whether the last was answered or not (open loop, pipelined on
    one keep-alive connection, so that the server takes them in order)."""
    log, conn = Publisher(planned), cast(Connection | None, None)
    try:
        for seq in range(planned + 1):
            due = first_ns + int(seq * 1e9 / s.rate)
            await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            if conn is None or not conn.open:
                opened = await open_connections([log], server.target, log.errors, 1, 5.0, Pipelined)
                conn = opened[0] if opened else None
            log.outstanding.append(seq)
            if conn is None or not conn.send(log.event(s, server, run_id, seq, due)):
                log.failed(conn, "no connection")
            if seq % 64 == 0:
                bar.update(min(planned / s.rate, (time.monotonic_ns() - first_ns) / 1e9))
        log.sent_s = (time.monotonic_ns() - first_ns) / 1e9
        if log.outstanding:
            log.answered_all.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(log.answered_all.wait(), s.drain)
        log.unanswered = len(log.outstanding)  # the server fell behind: no error, a fact
        log.outstanding.clear()
    finally:
        if conn is not None:
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
    sse: bool = False  # streams of server-sent events, not long polls
    publishing_s: float = 0.0  # first publish to the end event acknowledged (>= duration_s)
    sending_s: float = 0.0  # first publish to the end event sent
    delivering_s: float = 0.0  # first publish to the last delivery
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
    unanswered: int = 0  # publishes not answered when the publisher gave up on the server
    cut_off: int = 0  # events not read then
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
    server_cpu_s: float | None = None  # from the first publish until every subscriber ended
    server_us_per_delivery: float | None = None
    generator_lag: Latency | None = None  # how late the subscriber processes' loops ran
    late_ms: float = 0.0

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

    def tally(
        self, log: Publisher, results: list[Subscribed], first_ns: int, publisher_cpu_s: float
    ) -> None:
        """Fill in the figures from the publisher's log and the subscriber processes' (the
        first publish was due at `first_ns`; publishing took the coordinator
        `publisher_cpu_s` of CPU)."""
        failed = set(log.failed_seqs)
        published_ok = log.published - len(failed)
        errors: Counter[str] = Counter(log.errors)
        if not log.end_acknowledged and not log.unanswered:
            errors["end event not acknowledged"] += 1
        for process in results:
            errors.update(process.errors)
        subs = [sub for process in results for sub in process.subscribers]
        for index, sub in enumerate(subs):
            missing = [seq for seq in sub.missing if seq not in failed and seq < log.published]
            # seqs above the highest it saw are missing too when the end event never came,
            # unless the publisher gave up on the server: then they were cut off
            unseen_tail = 0 if sub.got_end else max(0, published_ok - sub.delivered - len(missing))
            gave_up = bool(log.unanswered)
            self.cut_off += unseen_tail if gave_up else 0
            self.missed_per_subscriber.append(len(missing) + (0 if gave_up else unseen_tail))
            self.duplicated_per_subscriber.append(sub.duplicates)
            if missing:
                self.missing_sample[index] = missing[:SAMPLE]
            if sub.error:
                errors[sub.error] += 1
        self.published, self.publish_failed = log.published, len(failed)
        self.unanswered = log.unanswered
        self.publisher_max_late_ms = log.max_late_ms
        self.publish_latency = summarize(log.ack_ns)
        self.connected = sum(p.connected for p in results)
        self.expected = published_ok * self.subscribers
        self.delivered = sum(sub.delivered for sub in subs)
        last_ns = max((p.last_ns for p in results), default=first_ns)
        self.sending_s, self.delivering_s = log.sent_s, max(0.0, (last_ns - first_ns) / 1e9)
        self.delivered_per_s = self.delivered / max(self.publishing_s, self.delivering_s)
        if self.server_cpu_s is not None and self.delivered:
            self.server_us_per_delivery = self.server_cpu_s / self.delivered * 1e6
        self.latency = summarize(ns for p in results for ns in p.latencies_ns)
        unconnected = self.subscribers - self.connected
        self.missed = sum(self.missed_per_subscriber) + published_ok * unconnected
        self.duplicated = sum(self.duplicated_per_subscriber)
        self.out_of_order = sum(sub.out_of_order for sub in subs)
        self.responses = sum(sub.responses for sub in subs)
        self.events_received = sum(sub.events for sub in subs)
        self.timeouts = sum(sub.timeouts for sub in subs)
        self.missed_flags = sum(sub.missed_flags for sub in subs)
        self.reconnects = sum(sub.reconnects for sub in subs)
        self.foreign = sum(sub.foreign for sub in subs)
        self.errors = merge_counts([errors])
        generator_s = sum(p.cpu_s for p in results) + publisher_cpu_s
        self.gen_cpu_share = generator_s / self.publishing_s
        self.late_ms = max((p.late_ms for p in results), default=0.0)
        self.generator_lag = summarize(ns for p in results for ns in p.lags_ns)

    def text(self) -> str:
        """The stream results as text."""
        latency, ack = self.latency or summarize([]), self.publish_latency or summarize([])
        lag = self.generator_lag or summarize([])
        events_answers = self.responses - self.timeouts
        per = fixed(self.events_received / events_answers if events_answers > 0 else None, 2)
        server = "-" if self.server_cpu_share is None else f"{self.server_cpu_share:.0%}"
        generator = "-" if self.gen_cpu_share is None else f"{self.gen_cpu_share:.0%}"
        kind = "SSE stream" if self.sse else "stream"
        how = "" if self.sse else f", poll timeout {self.poll_timeout_s} s"
        loop = "pipelined, open loop" if self.sse else "each after the last was answered"
        lines = [
            f"{kind} against {self.url}: {self.subscribers} subscribers, {self.rate:g} "
            f"events/s for {self.duration_s:g} s{how}",
            f"published      {self.published} (+ end event) in {self.sending_s:.2f} s ({loop}), "
            f"failed {self.publish_failed}, reply p50 {fixed(ack.p50_ms)} ms p99 "
            f"{fixed(ack.p99_ms)} ms, publisher at most {self.publisher_max_late_ms:.1f} ms "
            f"behind schedule (publishing took {self.publishing_s:.1f} s, to the end event's "
            f"answer or the publisher giving up; delivering {self.delivering_s:.1f} s, to the "
            "last delivery)",
            f"connected      {self.connected}/{self.subscribers}",
            f"delivered      {self.delivered}/{self.expected} "
            f"({self.delivered_per_s:.0f} events/s)",
            f"latency        p50 {fixed(latency.p50_ms)} ms, p99 {fixed(latency.p99_ms)} ms, "
            f"max {fixed(latency.max_ms)} ms ({latency.count} events; publish written -> "
            f"{'event read' if self.sse else 'answer complete'})",
        ]
        for name, total, per_sub in (
            ("missed", self.missed, self.missed_per_subscriber),
            ("duplicated", self.duplicated, self.duplicated_per_subscriber),
        ):
            lines.append(
                f"{name:<15}{total} ({sum(1 for n in per_sub if n)} subscribers; max "
                f"{max(per_sub, default=0)} per subscriber)"
            )
        answers = f"answers        {self.responses} ({self.timeouts} timeouts, {per} events per "
        answers += f"events answer, {self.missed_flags} flagged missed), "
        if self.sse:
            answers = f"streams        {self.responses} opened, {self.missed_flags} flagged "
            answers += "missed, "
        lines += [
            f"out of order   {self.out_of_order}"
            + (
                f"; the publisher gave up on {self.unanswered} answers after the drain time: "
                f"{self.cut_off} events not read by then"
                if self.unanswered
                else ""
            ),
            f"{answers}{self.reconnects} reconnects, {self.foreign} foreign events",
            f"CPU            server {server} of a core while publishing, "
            f"{fixed(self.server_us_per_delivery)} us per delivery (to the last subscriber's "
            f"end); generator {generator} (subscriber processes over the whole stream and the "
            "publisher, per second of publishing)",
            f"generator lag  p50 {fixed(lag.p50_ms)} ms, p99 {fixed(lag.p99_ms)} ms, max "
            f"{fixed(lag.max_ms)} ms (how late the subscriber processes ran a 1 ms timer: how "
            "long an event could wait to be read)",
            f"errors         {errors_text(self.errors)}",
        ]
        for index, seqs in list(self.missing_sample.items())[:SAMPLE]:
            lines.append(f"  subscriber {index} missed seqs {seqs}")
        return "\n".join(lines)


def run_stream(s: Stream, server: Server) -> StreamReport:
    """Run the stream; every wait is bounded (connects, settle, publishing, drain)."""
    if s.subscribers < 1 or s.rate <= 0 or s.duration <= 0 or s.max_events < 1:
        raise ValueError("subscribers, rate, duration and max events must be positive")
    procs = s.processes
    planned = min(s.max_events, max(1, round(s.rate * s.duration)))
    duration_s, run_id = planned / s.rate, uuid.uuid4().hex
    start = time.monotonic_ns() + int((1.0 + s.subscribers / 2000) * 1e9)
    budget_s = 3 * s.connect_timeout + 30 + s.settle_timeout + duration_s + s.drain
    deadline = start + int(budget_s * 1e9)
    token = server.credentials.subscribe_token(s.category)
    configs = [
        StreamConfig(s, server, token, run_id, count, planned, start, deadline)
        for count in split(s.subscribers, procs)
    ]
    cpu = ServerProcess(server.pid) if server.pid else None
    pin = list(s.pin) if s.pin else None
    sse = isinstance(s, StreamSSE)
    report = StreamReport(
        server.target.url, s.subscribers, s.rate, duration_s, procs, pin, s.poll_timeout, sse
    )
    job = sse_job if sse else stream_job
    with Workers(job, configs, s.pin, configs[0].subscribers + 64) as workers:
        time.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
        wait_until_waiting(server.stats, s.subscribers, s.settle, s.settle_timeout)
        first = time.monotonic_ns() + int(0.2 * 1e9)
        server_cpu, publisher_cpu = cpu.cpu_seconds() if cpu else 0.0, cpu_seconds()
        shown = f"{'SSE ' if sse else ''}stream {s.subscribers} x {s.rate:g}/s"
        with Bar(shown, duration_s) as bar:
            if sse:
                log = run_async(publish_open(s, server, run_id, planned, first, bar))
            else:
                log = publish_stream(s, server, run_id, planned, first, bar)
        report.publishing_s = max(duration_s, (time.monotonic_ns() - first) / 1e9)
        publisher_cpu = cpu_seconds() - publisher_cpu
        if cpu is not None:
            report.server_cpu_share = (cpu.cpu_seconds() - server_cpu) / report.publishing_s
        if log.unanswered:  # the subscribers would wait for the end event until the deadline
            with contextlib.suppress(OSError):
                workers.broadcast("stop")
        results = workers.gather(max(1.0, (deadline - time.monotonic_ns()) / 1e9 + 30))
        if cpu is not None:
            report.server_cpu_s = cpu.cpu_seconds() - server_cpu
    report.tally(log, results, first, publisher_cpu)
    return report
