"""Stream: K subscribers in resume loops (`bench.subscribers`) while the coordinator
publishes R events/s for T s on one keep-alive connection, event `seq` at start + seq/R
with ``{"run", "seq", "t"}`` in its data (`t`: `time.monotonic_ns()` just before the
write, one clock for every process on Linux), then an end event. A published `seq` that
a subscriber never saw is missed; a publish that failed is left out and reported."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from bench.http import BlockingConnection, HTTPError, Server
from bench.procs import Workers, split
from bench.progress import Bar
from bench.report import Latency, errors_text, fixed, merge_counts, summarize
from bench.servers import ServerProcess, wait_until_waiting
from bench.settings import Stream
from bench.subscribers import StreamConfig, Subscribed, stream_job

SAMPLE = 10  # missed sequence numbers kept per subscriber, for the report


@dataclass(slots=True)
class Publisher:
    """The coordinator's publishing: what was sent, acknowledged, and how late."""

    published: int = 0
    failed_seqs: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ack_ns: list[int] = field(default_factory=list)
    max_late_ms: float = 0.0
    end_acknowledged: bool = False


def publish_stream(
    s: Stream, server: Server, run_id: str, planned: int, first_ns: int, bar: Bar
) -> Publisher:
    """Send `planned` events at `s.rate` per second from `first_ns`, then the end event."""
    log, target = Publisher(), server.target
    conn = BlockingConnection(target, 10.0)
    try:
        for seq in range(planned + 1):
            due = first_ns + int(seq * 1e9 / s.rate)
            bar.sleep_until(due, first_ns)
            sent = time.monotonic_ns()
            log.max_late_ms = max(log.max_late_ms, (sent - due) / 1e6)
            data: dict[str, object] = {"run": run_id, "seq": seq, "t": sent}
            if seq == planned:
                data["end"] = True
            elif s.payload_bytes:
                data["pad"] = "x" * s.payload_bytes
            raw = server.publish(s.category, data, compact=True)
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
    def failed(self) -> bool:
        """True on any miss, duplicate, error, or subscriber that never connected."""
        return bool(
            self.missed
            or self.duplicated
            or self.out_of_order
            or self.errors
            or self.connected < self.subscribers
        )

    def tally(self, log: Publisher, results: list[Subscribed]) -> None:
        """Fill in the figures from the publisher's log and the subscriber processes'."""
        failed = set(log.failed_seqs)
        published_ok = log.published - len(failed)
        errors: Counter[str] = Counter(log.errors)
        if not log.end_acknowledged:
            errors["end event not acknowledged"] += 1
        for process in results:
            errors.update(process.errors)
        subs = [sub for process in results for sub in process.subscribers]
        for index, sub in enumerate(subs):
            missing = [seq for seq in sub.missing if seq not in failed and seq < log.published]
            # seqs above the highest it saw are missing too when the end event never came
            unseen_tail = 0 if sub.got_end else max(0, published_ok - sub.delivered - len(missing))
            self.missed_per_subscriber.append(len(missing) + unseen_tail)
            self.duplicated_per_subscriber.append(sub.duplicates)
            if missing:
                self.missing_sample[index] = missing[:SAMPLE]
            if sub.error:
                errors[sub.error] += 1
        self.published, self.publish_failed = log.published, len(failed)
        self.publisher_max_late_ms = log.max_late_ms
        self.publish_latency = summarize(log.ack_ns)
        self.connected = sum(p.connected for p in results)
        self.expected = published_ok * self.subscribers
        self.delivered = sum(sub.delivered for sub in subs)
        self.delivered_per_s = self.delivered / self.publishing_s
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
        self.gen_cpu_share = sum(p.cpu_s for p in results) / self.publishing_s
        self.late_ms = max((p.late_ms for p in results), default=0.0)

    def text(self) -> str:
        """The stream results as text."""
        latency, ack = self.latency or summarize([]), self.publish_latency or summarize([])
        answers = self.responses - self.timeouts
        per = fixed(self.events_received / answers if answers > 0 else None, 2)
        server = "-" if self.server_cpu_share is None else f"{self.server_cpu_share:.0%}"
        generator = "-" if self.gen_cpu_share is None else f"{self.gen_cpu_share:.0%}"
        lines = [
            f"stream against {self.url}: {self.subscribers} subscribers, {self.rate:g} "
            f"events/s for {self.duration_s:g} s, poll timeout {self.poll_timeout_s} s",
            f"published      {self.published} (+ end event), failed {self.publish_failed}, "
            f"reply p50 {fixed(ack.p50_ms)} ms p99 {fixed(ack.p99_ms)} ms, publisher at "
            f"most {self.publisher_max_late_ms:.1f} ms behind schedule (publishing took "
            f"{self.publishing_s:.1f} s)",
            f"connected      {self.connected}/{self.subscribers}",
            f"delivered      {self.delivered}/{self.expected} "
            f"({self.delivered_per_s:.0f} events/s)",
            f"latency        p50 {fixed(latency.p50_ms)} ms, p99 {fixed(latency.p99_ms)} ms, "
            f"max {fixed(latency.max_ms)} ms (publish written -> answer complete)",
        ]
        for name, total, per_sub in (
            ("missed", self.missed, self.missed_per_subscriber),
            ("duplicated", self.duplicated, self.duplicated_per_subscriber),
        ):
            lines.append(
                f"{name:<15}{total} ({sum(1 for n in per_sub if n)} subscribers; max "
                f"{max(per_sub, default=0)} per subscriber)"
            )
        lines += [
            f"out of order   {self.out_of_order}",
            f"answers        {self.responses} ({self.timeouts} timeouts, {per} events per "
            f"events answer, {self.missed_flags} flagged missed), {self.reconnects} "
            f"reconnects, {self.foreign} foreign events",
            f"CPU            server {server} of a core while publishing; generator "
            f"{generator} (subscriber processes' CPU over the whole stream, per second of "
            "publishing)",
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
    report = StreamReport(
        server.target.url, s.subscribers, s.rate, duration_s, procs, pin, s.poll_timeout
    )
    with Workers(stream_job, configs, s.pin, configs[0].subscribers + 64) as workers:
        time.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
        wait_until_waiting(server.stats, s.subscribers, s.settle, s.settle_timeout)
        first = time.monotonic_ns() + int(0.2 * 1e9)
        server_cpu = cpu.cpu_seconds() if cpu else 0.0
        with Bar(f"stream {s.subscribers} x {s.rate:g}/s", duration_s) as bar:
            log = publish_stream(s, server, run_id, planned, first, bar)
        report.publishing_s = max(duration_s, (time.monotonic_ns() - first) / 1e9)
        if cpu is not None:
            report.server_cpu_share = (cpu.cpu_seconds() - server_cpu) / report.publishing_s
        results = workers.gather(max(1.0, (deadline - time.monotonic_ns()) / 1e9 + 30))
    report.tally(log, results)
    return report
