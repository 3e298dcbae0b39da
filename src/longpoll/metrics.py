"""Prometheus metrics of a `LongpollApp`, served at `/metrics`, and right across workers.

Counts are kept as plain integers where things happen (an answer written, an
event published) and handed to prometheus-client's metrics before each scrape
and, with several worker processes, once a second: an increment of theirs costs
a good share of a whole publish, and more in multiprocess mode.

Several workers (`longpoll serve --workers N`) share their metrics through
prometheus-client's multiprocess mode: `PROMETHEUS_MULTIPROC_DIR` names a
directory, set before the workers start, where each writes its values; any
worker's `/metrics` then shows the sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from longpoll._api import Endpoint, Response
from longpoll.backends.base import EventCounts
from longpoll.manager import LongpollManager

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histograms: a subscribe may wait minutes."""

FLUSH_SECONDS = 1.0
"""How often a worker hands its counts over in multiprocess mode."""

_MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_NONE, _SUBSCRIBE, _PUBLISH = Endpoint.NONE, Endpoint.SUBSCRIBE, Endpoint.PUBLISH
_GaugeMode = Literal["livesum", "livemostrecent"]


def multiprocess() -> bool:
    """True if metrics are shared between processes (prometheus-client's multiprocess mode)."""
    return bool(os.environ.get(_MULTIPROCESS_DIR))


class Latency:
    """A histogram kept as plain integers: counts per bucket of `LATENCY_BUCKETS`."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


class RequestCounts:
    """Answers written, by endpoint and status, and how long publishes and subscribes took."""

    __slots__ = ("answers", "publish", "subscribe")

    def __init__(self) -> None:
        self.answers: dict[tuple[Endpoint, int], int] = {}
        self.publish = Latency()
        self.subscribe = Latency()

    def answered(self, endpoint: Endpoint | None, status: int, seconds: float) -> None:
        """Count an answer to a request for `endpoint` (None: no such endpoint) that
        took `seconds` (0: answered at once)."""
        key = (endpoint or _NONE, status)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1
        if endpoint is _SUBSCRIBE:
            latency = self.subscribe
        elif endpoint is _PUBLISH:
            latency = self.publish
        else:
            return
        if seconds:
            latency.observe(seconds)
        else:
            latency.counts[0] += 1


class Metrics:
    """The metrics of one app: counts of the manager, its backend and the requests.

    `open_connections` is set by a server that counts its connections.
    """

    def __init__(self, manager: LongpollManager) -> None:
        self.manager = manager
        self.requests = RequestCounts()
        self.open_connections: Callable[[], int] | None = None
        self._registry = CollectorRegistry(auto_describe=True)
        self._flushed: dict[object, float] = {}
        self._task: asyncio.Task[None] | None = None
        registry = self._registry

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, text, labels, registry=registry)

        def gauge(name: str, text: str, mode: _GaugeMode) -> Gauge:
            return Gauge(name, text, registry=registry, multiprocess_mode=mode)

        self._published = counter("longpoll_events_published", "Events published.")
        self._delivered = counter(
            "longpoll_events_delivered", "Events written to subscribers (each copy counts)."
        )
        self._dropped = counter(
            "longpoll_events_dropped",
            "Events dropped from a buffer before their time: for its size, for their age "
            "(TTL), or once a subscriber had them (delete after first retrieval).",
            ("reason",),
        )
        self._backend_errors = counter(
            "longpoll_backend_errors", "Times the backend (Redis) could not be reached."
        )
        self._answers = counter(
            "longpoll_http_responses",
            "HTTP answers by endpoint and status.",
            ("endpoint", "status"),
        )
        self._latency = Histogram(
            "longpoll_request_duration_seconds",
            "From a request's arrival to its answer, for publish and subscribe (which "
            "includes the time it waited for events); answers given at once count as 0.",
            ("endpoint",),
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._waiting = gauge(
            "longpoll_waiting_subscribers", "Subscribe requests waiting for events.", "livesum"
        )
        self._connections = gauge(
            "longpoll_open_connections", "Open client connections (longpoll serve).", "livesum"
        )
        self._categories = gauge(
            "longpoll_categories", "Categories with buffered events.", "livemostrecent"
        )
        self._buffered = gauge(
            "longpoll_buffered_events", "Events held in the buffers.", "livemostrecent"
        )
        self._buffered_bytes = gauge(
            "longpoll_buffered_bytes",
            "Bytes of the events held in the buffers (memory backend).",
            "livemostrecent",
        )

    def start(self) -> None:
        """With several processes, hand the counts over once a second until `stop()`."""
        if multiprocess() and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def stop(self) -> None:
        """Stop handing counts over (after a last time)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.flush()

    def flush(self) -> None:
        """Hand what was counted since the last time to prometheus-client."""
        counts: EventCounts = self.manager.counts
        self._add(self._published, counts.published)
        self._add(self._delivered, counts.delivered)
        self._add(self._backend_errors, counts.backend_errors)
        self._add(self._dropped.labels("deleted"), counts.deleted)
        if self.manager.drops_counted:
            self._add(self._dropped.labels("size"), counts.dropped_for_size)
            self._add(self._dropped.labels("ttl"), counts.expired)
        for (endpoint, status), count in list(self.requests.answers.items()):
            self._add(self._answers.labels(endpoint.value, str(status)), count)
        for endpoint, latency in (
            (Endpoint.PUBLISH, self.requests.publish),
            (Endpoint.SUBSCRIBE, self.requests.subscribe),
        ):
            self._add_latency(self._latency.labels(endpoint.value), latency)
        self._waiting.set(self.manager.waiting)
        if self.open_connections is not None:
            self._connections.set(self.open_connections())

    async def response(self) -> Response:
        """The answer of `/metrics`: every metric in Prometheus' text format."""
        self.flush()
        stats = await self.manager.stats()
        self._categories.set(stats.categories)
        self._buffered.set(stats.buffered_events)
        if stats.buffered_bytes is not None:
            self._buffered_bytes.set(stats.buffered_bytes)
        registry = self._registry
        if multiprocess():
            registry = _shared_registry()
        body = generate_latest(registry)
        return Response(200, body, ((b"content-type", CONTENT_TYPE_LATEST.encode("ascii")),))

    def waiting_everywhere(self) -> int:
        """Waiting subscribers of every worker (as of their last hand-over)."""
        if not multiprocess():
            return self.manager.waiting
        self.flush()
        return round(sum(_samples(_shared_registry(), "longpoll_waiting_subscribers")))

    def _add(self, counter: Counter, now: float) -> None:
        before = self._flushed.get(counter, 0)
        if now > before:
            counter.inc(now - before)
            self._flushed[counter] = now

    def _add_latency(self, histogram: Histogram, latency: Latency) -> None:
        # Bulk-adds the bucket counts: prometheus-client only takes one observation
        # at a time, through `observe`, and keeps each bucket as a value to `inc`.
        buckets = histogram._buckets
        for index, count in enumerate(latency.counts):
            key = (histogram, index)
            before = self._flushed.get(key, 0)
            if count > before:
                buckets[index].inc(count - before)
                self._flushed[key] = count
        before = self._flushed.get((histogram, "sum"), 0.0)
        if latency.total > before:
            histogram._sum.inc(latency.total - before)
            self._flushed[histogram, "sum"] = latency.total

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()


def _shared_registry() -> CollectorRegistry:
    """The metrics of every process, from the multiprocess directory."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def _samples(registry: CollectorRegistry, name: str) -> Iterator[float]:
    for family in registry.collect():
        if family.name == name:
            for sample in family.samples:
                yield sample.value
