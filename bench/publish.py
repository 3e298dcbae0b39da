"""Publish throughput: C keep-alive connections, each POSTing one event after another.

The closed loop itself is `bench.load`; this module builds the publish request.
"""

from __future__ import annotations

import json

from bench.credentials import NO_CREDENTIALS, Credentials
from bench.http import Target
from bench.http import request as http_request
from bench.load import LEAD_S, LoadReport, load_notes, run_load
from bench.server import ServerPid


def publish_body(category: str, payload_bytes: int) -> bytes:
    """The JSON body every publish sends."""
    data: dict[str, object] = {"n": 0}
    if payload_bytes:
        data["pad"] = "x" * payload_bytes
    return json.dumps({"category": category, "data": data}).encode()


def run_publish(
    target: Target,
    publish_path: str,
    category: str,
    *,
    connections: int,
    procs: int,
    cores: tuple[int, ...] | None,
    warmup_s: float,
    duration_s: float,
    max_requests: int,
    payload_bytes: int = 0,
    server_pid: ServerPid | None = None,
    lead_s: float = LEAD_S,
    credentials: Credentials = NO_CREDENTIALS,
) -> LoadReport:
    """Publish back to back on `connections` connections; count what the window saw."""
    body = publish_body(category, payload_bytes)
    request = http_request(
        target, "POST", target.path(publish_path), body, credentials.publish_token
    )
    return run_load(
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
        label="publish",
    )


def publish_notes() -> list[str]:
    """What the publish table's columns mean."""
    return load_notes("publishes")
