"""Catch-up: subscribe requests answered at once from the buffer, C keep-alive connections.

The coordinator first publishes `events` events on a fresh category; then every
connection loops ``GET /events?category=C&timeout=T&since_time=-1`` (everything
buffered), or resumes from the first published event (`since_time` + `last_id` of
event 1, so `events - 1` per answer and the `last_id` path is exercised). The closed
loop is `bench.load`: bounded by `--duration` and `--max-requests`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.credentials import NO_CREDENTIALS, Credentials
from bench.http import BlockingConnection, HTTPError, Target, fetch, request, subscribe_request
from bench.load import LEAD_S, LoadReport, run_load
from bench.server import ServerPid

SINCE_CHOICES = ("all", "first")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a published event sits: its timestamp and id (None if the server omits them)."""

    timestamp: int | None
    id: str | None


def publish_events(
    target: Target,
    path: str,
    category: str,
    count: int,
    payload_bytes: int,
    token: str | None = None,
) -> list[Position]:
    """Publish `count` events on one keep-alive connection (with `token` as
    `Authorization: Bearer`); their positions, in order."""
    conn = BlockingConnection(target, 10.0)
    positions: list[Position] = []
    try:
        for number in range(count):
            data: dict[str, object] = {"n": number}
            if payload_bytes:
                data["pad"] = "x" * payload_bytes
            body = json.dumps({"category": category, "data": data}).encode()
            response = conn.request(request(target, "POST", target.path(path), body, token))
            if response.status != 200:
                raise HTTPError(f"publish {number} answered HTTP {response.status}")
            reply = json.loads(response.body)
            timestamp, event_id = reply.get("timestamp"), reply.get("id")
            positions.append(
                Position(
                    timestamp if isinstance(timestamp, int) else None,
                    event_id if isinstance(event_id, str) else None,
                )
            )
            if not response.keep_alive:
                conn.close()
                conn = BlockingConnection(target, 10.0)
    finally:
        conn.close()
    return positions


@dataclass(slots=True)
class CatchupReport:
    """The closed-loop run, and what one answer carried (probed before the run)."""

    since: str
    query: str
    events_published: int
    events_per_response: int
    response_bytes: int
    load: LoadReport

    @property
    def failed(self) -> bool:
        """True when a request failed or a connection could not be opened."""
        return self.load.failed


def run_catchup(
    target: Target,
    events_path: str,
    publish_path: str,
    category: str,
    *,
    events: int,
    since: str,
    poll_timeout_s: int,
    payload_bytes: int,
    connections: int,
    procs: int,
    cores: tuple[int, ...] | None,
    warmup_s: float,
    duration_s: float,
    max_requests: int,
    server_pid: ServerPid | None,
    lead_s: float = LEAD_S,
    credentials: Credentials = NO_CREDENTIALS,
) -> CatchupReport:
    """Publish `events` events, check one answer, then loop the catch-up request."""
    if events < 1 or since not in SINCE_CHOICES:
        raise ValueError(f"--events must be at least 1 and --since one of {SINCE_CHOICES}")
    positions = publish_events(
        target, publish_path, category, events, payload_bytes, credentials.publish_token
    )
    since_time, last_id = -1, None
    if since == "first":
        first = positions[0]
        if first.timestamp is None or first.id is None:
            raise ValueError("--since first needs publish replies with id and timestamp")
        since_time, last_id = first.timestamp, first.id
    token = credentials.subscribe_token(category)
    request = subscribe_request(
        target, events_path, category, poll_timeout_s, since_time, last_id, token
    )
    probe = fetch(target, request, poll_timeout_s + 10.0)
    if probe.status != 200:
        raise ValueError(f"the catch-up request was answered HTTP {probe.status}")
    carried = json.loads(probe.body).get("events")
    if not isinstance(carried, list) or not carried:
        raise ValueError("the catch-up request was not answered with events")
    load = run_load(
        target,
        request,
        connections=connections,
        procs=procs,
        cores=cores,
        warmup_s=warmup_s,
        duration_s=duration_s,
        max_requests=max_requests,
        server_pid=server_pid,
        lead_s=lead_s,
        expect=b'"events"',
        unexpected="answer without events",
        label="catchup",
    )
    return CatchupReport(
        since=since,
        query=request.split(b" ", 2)[1].decode(),
        events_published=events,
        events_per_response=len(carried),
        response_bytes=len(probe.body),
        load=load,
    )
